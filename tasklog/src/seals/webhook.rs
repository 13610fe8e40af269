//! Signed heads POSTed to a webhook, from a task of their own, so a failing
//! or slow receiver never holds sealing up. Heads wait in a bounded queue;
//! when it is full the oldest is dropped, with a warning: each later head
//! covers what it sealed and more, so a receiver that keeps a later head can
//! still check consistency with the heads it kept before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// The header that carries `sha256=<hex>`, the body's HMAC-SHA256 under the
/// shared secret, when one is configured.
pub const SIGNATURE_HEADER: &str = "X-Tasklog-Signature";

/// Where heads are POSTed, and how hard to try.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    /// Signs each body (see [`SIGNATURE_HEADER`]).
    pub secret: Option<SecretString>,
    /// Heads waiting to be sent, at most.
    pub queue: usize,
    /// Tries per head, the first included; then it is given up.
    pub attempts: u32,
    /// The wait before the second try; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// For each request, connecting included.
    pub timeout: Duration,
}

impl WebhookConfig {
    pub fn new(url: reqwest::Url) -> Self {
        Self {
            url,
            secret: None,
            queue: 64,
            attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A head to send: its size (for the logs) and its document.
struct Head {
    tree_size: u64,
    body: String,
}

struct Queue {
    heads: Mutex<VecDeque<Head>>,
    ready: Notify,
    capacity: usize,
}

/// Hands heads to the webhook's task without waiting for it.
#[derive(Clone)]
pub struct HeadWebhook {
    queue: Arc<Queue>,
}

impl HeadWebhook {
    /// Starts the task that POSTs queued heads, in order, until `stop`
    /// turns true.
    pub fn spawn(
        config: WebhookConfig,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect would turn the POST into a GET: a 3xx is a failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let queue = Arc::new(Queue {
            heads: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: config.queue.max(1),
        });
        let task = tokio::spawn(send_queued(queue.clone(), client, config, stop));
        Ok((Self { queue }, task))
    }

    /// Queues `body`, the signed head of `tree_size` as published; drops the
    /// oldest queued head when the queue is full.
    pub fn publish(&self, tree_size: u64, body: String) {
        let dropped = {
            let mut heads = self.queue.heads.lock().expect("no panic holds this lock");
            let dropped = (heads.len() >= self.queue.capacity)
                .then(|| heads.pop_front())
                .flatten();
            heads.push_back(Head { tree_size, body });
            dropped
        };
        if let Some(dropped) = dropped {
            tracing::warn!(
                dropped_tree_size = dropped.tree_size,
                tree_size,
                "seals: the webhook's queue is full; the oldest head is dropped (later heads supersede it)"
            );
        }
        // A permit is kept when the task is not waiting: no head waits for the next.
        self.queue.ready.notify_one();
    }
}

/// Whether `stop` turned true (or its sender is gone) while waiting for it.
async fn stopped(stop: &mut watch::Receiver<bool>) -> bool {
    stop.changed().await.is_err() || *stop.borrow()
}

async fn send_queued(
    queue: Arc<Queue>,
    client: reqwest::Client,
    config: WebhookConfig,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let next = queue
            .heads
            .lock()
            .expect("no panic holds this lock")
            .pop_front();
        let Some(head) = next else {
            tokio::select! {
                _ = queue.ready.notified() => continue,
                true = stopped(&mut stop) => return,
            }
        };
        let mut backoff = config.first_backoff;
        for attempt in 1..=config.attempts {
            match post(&client, &config, &head.body).await {
                Ok(()) => {
                    tracing::debug!(
                        tree_size = head.tree_size,
                        "seals: head sent to the webhook"
                    );
                    break;
                }
                Err(error) if attempt < config.attempts => {
                    tracing::warn!(tree_size = head.tree_size, attempt, %error, "seals: the webhook did not take the head; trying again");
                }
                Err(error) => {
                    tracing::error!(tree_size = head.tree_size, attempt, %error, "seals: the webhook did not take the head; giving it up (later heads supersede it)");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                true = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }
}

/// One POST of `body`; why it failed, with the whole cause chain.
async fn post(client: &reqwest::Client, config: &WebhookConfig, body: &str) -> Result<(), String> {
    let mut request = client
        .post(config.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(secret) = &config.secret {
        request = request.header(
            SIGNATURE_HEADER,
            signature(secret.expose_secret().as_bytes(), body.as_bytes()),
        );
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("it answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_head() {
        let (_stop, stopped) = watch::channel(true);
        let config = WebhookConfig {
            queue: 2,
            ..WebhookConfig::new("http://127.0.0.1:9/".parse().unwrap())
        };
        let (webhook, task) = HeadWebhook::spawn(config, stopped).unwrap();
        task.await.unwrap();
        for size in 1..=3 {
            webhook.publish(size, format!("{{\"tree_size\":{size}}}"));
        }
        let queued: Vec<u64> = webhook
            .queue
            .heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.tree_size)
            .collect();
        assert_eq!(queued, [2, 3]);
    }
}
