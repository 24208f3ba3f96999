//! The upstream connection's transport, with the upstream's progress notifications taken
//! out as they arrive and sent on to the client that asked.
//!
//! rmcp's client handles each notification in a task of its own, so a progress
//! notification handed to it can reach the client after the answer it came before, when
//! the client's request stream is closed and the notification lost. Taken out here, where
//! messages come one at a time and in order, each is on its way before the answer is read.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonRpcMessage, ServerNotification};
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

use super::notices::ProgressRoutes;

/// The longest a progress notification may hold up what follows it (a client whose
/// stream is full loses the notification instead).
const DELIVERY_LIMIT: Duration = Duration::from_millis(100);

pub(super) struct ProgressTransport<T> {
    inner: T,
    routes: Arc<ProgressRoutes>,
}

impl<T> ProgressTransport<T> {
    pub(super) fn new(inner: T, routes: Arc<ProgressRoutes>) -> Self {
        ProgressTransport { inner, routes }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for ProgressTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            match message {
                JsonRpcMessage::Notification(notification) => match notification.notification {
                    ServerNotification::ProgressNotification(progress) => {
                        let delivery = self.routes.deliver(progress.params);
                        let _ = tokio::time::timeout(DELIVERY_LIMIT, delivery).await;
                    }
                    other => {
                        return Some(JsonRpcMessage::Notification(
                            rmcp::model::JsonRpcNotification {
                                jsonrpc: notification.jsonrpc,
                                notification: other,
                            },
                        ));
                    }
                },
                other => return Some(other),
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
