//! Any bytes as an uploaded image: decoding must never panic and never allocate past the pixel
//! limit the header is checked against.
#![no_main]

use kvs_infer::media::image::RgbImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = RgbImage::decode_within(input, 1024 * 1024);
});
