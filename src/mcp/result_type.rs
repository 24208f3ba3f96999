//! Every result the bridge passes on says `resultType: "complete"` when the upstream's did
//! not. An upstream on a protocol before 2026-07-28 never says it, and 2026-07-28 requires
//! it (the conformance suite's schema check fails without it); rmcp passes the field as it
//! was read, and takes `complete` out again for a client on an older protocol.

use rmcp::model::{
    CallToolResponse, CallToolResult, CompleteResult, GetPromptResponse, GetPromptResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    ReadResourceResponse, ReadResourceResult, ResultType,
};

/// A result that can say it is complete.
pub trait Completed {
    /// Says `complete` unless it says something already.
    fn complete(&mut self);
}

macro_rules! completed {
    ($($result:ty),*) => {$(
        impl Completed for $result {
            fn complete(&mut self) {
                self.result_type.get_or_insert(ResultType::COMPLETE);
            }
        }
    )*};
}

completed!(
    ListToolsResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    CompleteResult,
    CallToolResult,
    GetPromptResult,
    ReadResourceResult
);

/// The answers that may also be `input_required` (or, for a call, a task): only a complete
/// one is marked.
macro_rules! completed_when_complete {
    ($($response:ident),*) => {$(
        impl Completed for $response {
            fn complete(&mut self) {
                if let $response::Complete(result) = self {
                    result.complete();
                }
            }
        }
    )*};
}

completed_when_complete!(CallToolResponse, GetPromptResponse, ReadResourceResponse);

/// Answers with no result of their own (`logging/setLevel`).
impl Completed for () {
    fn complete(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ServerResult;

    #[test]
    fn an_upstreams_result_says_complete_to_new_clients_and_nothing_to_old_ones() {
        let legacy: CallToolResult =
            serde_json::from_value(serde_json::json!({"content": []})).unwrap();
        assert_eq!(legacy.result_type, None);
        let mut answer = CallToolResponse::Complete(legacy);
        answer.complete();
        let CallToolResponse::Complete(result) = answer else {
            unreachable!()
        };
        let wire = serde_json::to_value(&result).unwrap();
        assert_eq!(wire["resultType"], "complete");
        let mut old = ServerResult::CallToolResult(result);
        old.strip_result_type_for_legacy_peer();
        assert!(
            serde_json::to_value(&old)
                .unwrap()
                .get("resultType")
                .is_none()
        );
    }

    #[test]
    fn a_result_that_says_something_keeps_it() {
        let mut listed: ListToolsResult = serde_json::from_value(serde_json::json!({
            "tools": [], "resultType": "complete"
        }))
        .unwrap();
        listed.complete();
        assert_eq!(listed.result_type, Some(ResultType::COMPLETE));
    }
}
