pub mod mkv;
