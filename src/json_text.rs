//! Whether a text goes into JSON as it is: no `"`, `\` or control character to escape. Asked
//! of every name and text a call's record holds, for its length (`mcp::json_size`) and when
//! it is written to a feed (`activity::call`); nearly always it does.

/// Every byte's low bits set: a byte-wise constant is this times the byte.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether `text` has no byte JSON escapes. Eight bytes at a time: a byte-at-a-time loop
/// cost about 5 instructions a byte, and the vectorised loop the compiler makes of one
/// without branches cost a short name 200 (its setup), both counted by bench/instructions.
pub fn is_plain(text: &str) -> bool {
    let mut words = text.as_bytes().chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if special_in(x) {
            return false;
        }
    }
    !words.remainder().iter().any(|&b| is_special(b))
}

fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `x` is below 0x20, `"` or `\` (the bit tricks of "Bit Twiddling
/// Hacks": a byte below n borrows into its high bit, which a byte of 0x80 or more has set
/// and so does not count).
fn special_in(x: u64) -> bool {
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    (below(x, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_in_every_place_is_judged_as_one_at_a_time() {
        // Long enough for words and a remainder.
        for len in [1, 7, 8, 9, 16, 23] {
            for place in 0..len {
                for b in 0u8..0x80 {
                    let mut bytes = vec![b'a'; len];
                    bytes[place] = b;
                    let text = String::from_utf8(bytes).unwrap();
                    assert_eq!(
                        is_plain(&text),
                        !is_special(b),
                        "{b:#x} at {place} of {len}"
                    );
                }
            }
        }
        for text in ["", "hello", "naïve ✓ 🦀 \u{202e}", "ÿÿÿÿÿÿÿÿÿ"] {
            assert!(is_plain(text), "{text}");
        }
        for text in ["ÿÿÿÿ\"ÿÿÿÿ", "🦀🦀\n", "\u{7f}\u{1f}", "ÿÿÿÿ\\ÿÿÿÿ"] {
            assert!(!is_plain(text), "{text:?}");
        }
    }

    /// Any eight bytes, high ones among them: the word's answer is its bytes' one by one.
    #[test]
    fn a_word_is_judged_as_its_bytes() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            // Biased toward the boundaries: some bytes forced to 0x1f, 0x20, '"', '\\', 0x80.
            let mut bytes = word.to_le_bytes();
            let near = [0x1f, 0x20, b'"', b'\\', 0x80, 0x21, 0x5d, 0xa2];
            bytes[(x % 8) as usize] = near[(x >> 3) as usize % 8];
            let word = u64::from_le_bytes(bytes);
            assert_eq!(
                special_in(word),
                bytes.iter().any(|&b| is_special(b)),
                "{word:#018x}"
            );
        }
    }
}
