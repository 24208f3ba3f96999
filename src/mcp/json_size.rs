//! How long `serde_json`'s compact form of a JSON value is, counted without writing it: every
//! call's arguments are measured for the console and the span, and `serde_json` writing them
//! to a counting writer walks them through its serializer and escaper.

use serde_json::{Map, Number, Value};

/// The length of `value` as `serde_json::to_string` writes it.
pub fn of_value(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => of_number(number),
        Value::String(text) => of_string(text),
        Value::Array(items) => {
            2 + items.iter().map(of_value).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Object(fields) => of_object(fields),
    }
}

/// The length of `fields` as a JSON object.
pub fn of_object(fields: &Map<String, Value>) -> usize {
    let each: usize = fields
        .iter()
        .map(|(key, value)| of_string(key) + 1 + of_value(value))
        .sum();
    2 + each + fields.len().saturating_sub(1)
}

fn of_number(number: &Number) -> usize {
    let mut digits = itoa::Buffer::new();
    if let Some(n) = number.as_u64() {
        digits.format(n).len()
    } else if let Some(n) = number.as_i64() {
        digits.format(n).len()
    } else {
        // A float: rare in arguments, and its shortest form is serde_json's to decide.
        serde_json::to_string(number).map_or(0, |text| text.len())
    }
}

/// A string's length quoted and escaped as `serde_json` escapes it: `"` and `\`, and the
/// control characters (`\b \t \n \f \r` in two bytes, the rest as `\u00XX`).
fn of_string(text: &str) -> usize {
    let escapes: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | b'\t' | b'\n' | 0x0C | b'\r' => 1,
            0x00..=0x1F => 5,
            _ => 0,
        })
        .sum();
    2 + text.len() + escapes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lengths_are_serde_jsons() {
        let mut every_byte = String::new();
        for b in 0u8..0x80 {
            every_byte.push(char::from(b));
        }
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-17),
            json!(1.5),
            json!(1e300),
            json!(-0.0),
            json!(0.1),
            json!(""),
            json!("plain"),
            json!("quote \" backslash \\ tab \t nl \n nul \u{0} bell \u{7} del \u{7f}"),
            json!("é ∑ 😀 \u{2028} \u{202e}"),
            json!(every_byte),
            json!([]),
            json!([1, "two", [3], {"four": 4}]),
            json!({}),
            json!({"name": "Ada", "nested": {"list": [null, false, 2.25], "k\"ey": "v\nal"}}),
        ];
        for value in values {
            let written = serde_json::to_string(&value).unwrap();
            assert_eq!(of_value(&value), written.len(), "{written}");
            if let Value::Object(fields) = &value {
                assert_eq!(of_object(fields), written.len(), "{written}");
            }
        }
    }
}
