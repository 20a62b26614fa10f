//! Any bytes, in any chunking: the demuxer must never panic, and every error names an offset
//! inside the input.
#![no_main]

use kvs_infer::media::Event;
use kvs_infer::media::demux::{DemuxConfig, Demuxer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut d = Demuxer::new(DemuxConfig { max_element_size: 1 << 20, ..DemuxConfig::default() });
    for part in data.chunks(chunk) {
        d.push(part);
        while let Some(e) = d.next_event() {
            if let Event::Error(err) = e {
                assert!(err.offset().is_none_or(|o| o <= data.len() as u64));
            }
        }
    }
    d.finish();
    while d.next_event().is_some() {}
});
