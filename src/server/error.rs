//! Errors of the HTTP API and the one place they become status codes. Clients get a short
//! message; the detail goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;

use crate::infer::InferError;
use crate::media::image::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not ready: the models are still loading")]
    NotReady,
    #[error("request body over the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0:?}: send image/jpeg or image/png")]
    UnsupportedType(String),
    #[error("the image cannot be decoded")]
    Undecodable(#[source] ImageError),
    #[error("{0} (server.max_image_pixels)")]
    ImageTooLarge(#[source] ImageError),
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: std::time::Duration },
    #[error("malformed request body")]
    MalformedBody(#[source] kvs_infer_common::BoxError),
    #[error("the inference queue is full; retry")]
    Busy(#[source] InferError),
    #[error("inference failed")]
    Inference(#[source] InferError),
    #[error("the request's task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the picture could not be encoded")]
    Picture(#[source] image::ImageError),
    #[error(
        "this route needs the API token (server.auth): Authorization: Bearer <token>, or Basic with it as the password"
    )]
    Unauthorized,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotReady | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge { .. } | ApiError::ImageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::MalformedBody(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Undecodable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Inference(_) | ApiError::Task(_) | ApiError::Picture(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let detail = std::error::Error::source(&self).map(ToString::to_string).unwrap_or_default();
            tracing::warn!(error = %self, detail, "request failed");
        }
        let mut response = (status, Json(ErrorBody { error: self.to_string() })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // A browser asks for it (any user name, the token as the password); scripts send Bearer.
            let challenge = axum::http::HeaderValue::from_static("Basic realm=\"kvs-infer\", charset=\"UTF-8\"");
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
