//! One read of the log serves every live projector of a process that asks
//! for the same page: they wake on the same announcement, stand at the same
//! checkpoint, and would otherwise each read and decode the same events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tasklog_event_store::postgres::CHANNEL;
use tasklog_event_store::{EventStore, LogPage, LogPosition, StoreError};
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;

/// Reads kept for sharing: a few pages per projector is plenty.
const KEPT: usize = 16;

/// Pages of the log, shared among the projectors of one process.
pub struct SharedLog {
    store: Arc<dyn EventStore>,
    recent: Mutex<VecDeque<Arc<SharedRead>>>,
}

struct SharedRead {
    after: LogPosition,
    limit: usize,
    /// Before the read was sent: its snapshot is no older.
    started: Instant,
    page: OnceCell<Arc<LogPage>>,
}

impl SharedLog {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The page of up to `limit` events after `after`, from a read started
    /// at or after `not_before`. A projector passes the time it last took
    /// announcements in: a read started since then sees every append they
    /// announced, as its own read would, so no announced event waits for
    /// the next announcement.
    pub async fn read_page(
        &self,
        after: LogPosition,
        limit: usize,
        not_before: Instant,
    ) -> Result<Arc<LogPage>, StoreError> {
        let read = {
            let mut recent = self.recent.lock().expect("no panic holds this lock");
            let found = recent
                .iter()
                .find(|r| r.after == after && r.limit == limit && r.started >= not_before)
                .cloned();
            found.unwrap_or_else(|| {
                let read = Arc::new(SharedRead {
                    after,
                    limit,
                    started: Instant::now(),
                    page: OnceCell::new(),
                });
                recent.push_back(read.clone());
                if recent.len() > KEPT {
                    recent.pop_front();
                }
                read
            })
        };
        // The first asker reads; the others wait for its page (or, if it
        // failed, one of them reads).
        read.page
            .get_or_try_init(|| async { self.store.read_page(after, limit).await.map(Arc::new) })
            .await
            .cloned()
    }
}

/// Appends announced on the log's channel, heard by one `LISTEN` connection
/// for every projector of a process (each listening connection is woken by
/// every announcement) and passed on as a counter.
#[derive(Clone)]
pub struct Announcements {
    heard: watch::Receiver<u64>,
}

impl Announcements {
    /// Starts listening on `pool`'s database; stops when every clone is dropped.
    pub fn start(pool: &PgPool) -> Self {
        let (sender, heard) = watch::channel(0);
        tokio::spawn(listen(pool.clone(), sender));
        Self { heard }
    }

    /// Waits for an announcement not yet taken in (at once if one came
    /// meanwhile), then takes in every one so far.
    pub async fn next(&mut self) {
        if self.heard.changed().await.is_err() {
            // The listener stopped: only the fallback looks remain.
            std::future::pending::<()>().await;
        }
        self.heard.borrow_and_update();
    }
}

/// Counts announcements, and reconnections (which may have lost some).
async fn listen(pool: PgPool, heard: watch::Sender<u64>) {
    while !heard.is_closed() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for appends; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        // Whatever came while not listening: look.
        heard.send_modify(|n| *n += 1);
        loop {
            tokio::select! {
                got = listener.try_recv() => match got {
                    Ok(Some(_)) => {
                        while listener.next_buffered().is_some() {}
                        heard.send_modify(|n| *n += 1);
                    }
                    Ok(None) => {
                        // Reconnected by itself: announcements may be lost.
                        heard.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the append listener; reconnecting");
                        break;
                    }
                },
                _ = heard.closed() => return,
            }
        }
    }
}
