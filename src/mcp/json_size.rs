//! How long `serde_json`'s compact form of a JSON value is, counted without writing it: every
//! call's arguments and answer are measured for the console and the span, and `serde_json`
//! writing them to a counting writer walks them through its serializer and escaper.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Number, Value};

/// The length of `result` as `serde_json` writes it, when its content is text only (nearly
/// every tool's answer); `None` for any other, which the caller measures through serde.
/// Through serde a one-line answer cost 900 instructions (the tagged enum of its content is
/// serialized through serde's own buffering serializer), a sixth of the console's whole
/// cost a request (bench/instructions, profiled); added up so, about 210.
pub fn of_call_result(result: &CallToolResult) -> Option<usize> {
    // The fields' lengths ("key":value); 0 for one left out.
    let mut fields = [0; 5];
    if let Some(kind) = &result.result_type {
        fields[0] = field("resultType", of_string(kind.as_str()));
    }
    let mut content = 2 + result.content.len().saturating_sub(1);
    for block in &result.content {
        let ContentBlock::Text(text) = block else {
            return None;
        };
        if text.meta.is_some() || text.annotations.is_some() {
            return None;
        }
        content += r#"{"type":"text","text":}"#.len() + of_string(&text.text);
    }
    fields[1] = field("content", content);
    if let Some(structured) = &result.structured_content {
        fields[2] = field("structuredContent", of_value(structured));
    }
    if let Some(is_error) = result.is_error {
        fields[3] = field("isError", if is_error { 4 } else { 5 });
    }
    if let Some(meta) = &result.meta {
        fields[4] = field("_meta", of_object(meta));
    }
    let given = fields.iter().filter(|&&n| n != 0).count();
    Some(2 + fields.iter().sum::<usize>() + given.saturating_sub(1))
}

/// `"key":` and a value `value` bytes long.
fn field(key: &str, value: usize) -> usize {
    key.len() + 3 + value
}

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
    if crate::json_text::is_plain(text) {
        return 2 + text.len();
    }
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
    use rmcp::model::{Annotations, ContentBlock as Content, ResultType, Role, TextContent};
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

    #[test]
    fn a_tool_answer_of_text_is_measured_as_serde_writes_it() {
        let hostile = "quote \" backslash \\ nl \n nul \u{0} é 😀 \u{202e} <script>";
        let mut results = vec![
            CallToolResult::success(vec![Content::text("Hello, bench!")]),
            CallToolResult::error(vec![Content::text(hostile), Content::text("")]),
            CallToolResult::success(Vec::new()),
            CallToolResult::structured(json!({"n": 1.5, "list": [null, "x\ty"]})),
        ];
        let mut bare = CallToolResult::success(vec![Content::text("no type, no flag")]);
        bare.result_type = None;
        bare.is_error = None;
        results.push(bare);
        let mut with_meta = CallToolResult::success(vec![Content::text("m")]);
        with_meta.meta = Some(rmcp::model::MetaObject(
            json!({"k": "v"}).as_object().unwrap().clone(),
        ));
        with_meta.result_type = Some(ResultType::INPUT_REQUIRED);
        results.push(with_meta);
        for result in &results {
            let written = serde_json::to_string(result).unwrap();
            assert_eq!(of_call_result(result), Some(written.len()), "{written}");
        }
        // Anything but plain text is left to serde.
        let mut annotated = TextContent::new("a");
        let mut annotations = Annotations::default();
        annotations.audience = Some(vec![Role::User]);
        annotated.annotations = Some(annotations);
        let image = Content::image("aGk=", "image/png");
        for content in [Content::Text(annotated), image] {
            assert_eq!(
                of_call_result(&CallToolResult::success(vec![content])),
                None
            );
        }
    }
}
