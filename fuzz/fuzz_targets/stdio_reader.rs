//! The upstream stdio reader: whatever a child writes, in whatever pieces, lines come out
//! whole or cut at the limit (never longer), nothing is lost or invented, and the log shows
//! each line on one line with the configured secret never in it.
#![no_main]

use latchkey::upstream::lines::{Read, kind, read_line};
use latchkey::upstream::log_line::LogLines;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "s3cr3t-t0ken";

fuzz_target!(|data: &[u8]| {
    let (Some(&capacity), Some(&max)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = &data[2..];
    let capacity = usize::from(capacity).max(1);
    let max = usize::from(max).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = LogLines::new([SECRET.to_owned()]);
    runtime.block_on(async {
        let mut reader = tokio::io::BufReader::with_capacity(capacity, input);
        let mut line = Vec::new();
        let mut seen = 0usize;
        loop {
            match read_line(&mut reader, &mut line, max).await.unwrap() {
                Read::End => break,
                Read::Line => {
                    assert!(line.len() <= max);
                    assert_eq!(&input[seen..seen + line.len()], &line[..]);
                    seen += line.len();
                }
                Read::Cut(length) => {
                    assert!(length > max);
                    assert_eq!(line.len(), max);
                    assert_eq!(&input[seen..seen + max], &line[..]);
                    seen += length;
                }
            }
            let _ = kind(&line);
            let shown = log.show(&line);
            assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown:?}");
            assert!(!shown.contains(SECRET), "{shown:?}");
        }
        assert_eq!(seen, input.len());
    });
});
