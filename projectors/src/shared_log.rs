//! One read of the log serves every live projector of a process that asks
//! for the same page: they wake on the same announcement, stand at the same
//! checkpoint, and would otherwise each read and decode the same events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tasklog_event_store::{EventStore, LogPage, LogPosition, StoreError};
use tokio::sync::OnceCell;
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
