//! The signal that appends happened, for live readers of the log.
//!
//! A `tokio::sync::watch` of a counter, rather than a `Notify` or a
//! `broadcast`: announcements coalesce (a reader busy with a batch wakes once
//! for everything that came meanwhile, and one read of the log answers it
//! all); a reader that was not waiting when an announcement came still finds
//! it, unlike `Notify::notify_waiters`; every holder is woken, unlike
//! `Notify::notify_one`; and no holder can lag behind and lose messages, as a
//! `broadcast` receiver can. The counter's value means nothing; only its
//! changes do.

use tokio::sync::watch;

/// The backend's side: announces appends to every [`Appends`] handed out.
#[derive(Debug)]
pub struct AppendSignal(watch::Sender<u64>);

/// Wakes its holder when appends were announced since it last looked.
///
/// A backend also announces when it may have missed announcements (its
/// listener reconnected, say), so that readers look again. Announcements of
/// appends that rolled back or of transactions that append nothing do not
/// exist: a live reader keeps a fallback look of its own.
#[derive(Debug)]
pub struct Appends(watch::Receiver<u64>);

impl AppendSignal {
    /// A signal and a first handle; keep that handle to make more with
    /// [`Appends::fresh`] (the signal is [`AppendSignal::unheard`] once every
    /// handle is dropped).
    pub fn channel() -> (Self, Appends) {
        let (sender, receiver) = watch::channel(0);
        (Self(sender), Appends(receiver))
    }

    /// Wakes every handle (once, however many announcements came before it
    /// looked).
    pub fn announce(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// True once every handle is dropped: nobody hears it any more.
    pub fn is_unheard(&self) -> bool {
        self.0.is_closed()
    }

    /// Resolves once every handle is dropped.
    pub async fn unheard(&self) {
        self.0.closed().await
    }
}

impl Appends {
    /// Another handle to the same signal, woken only by announcements from
    /// now on.
    pub fn fresh(&self) -> Self {
        let mut receiver = self.0.clone();
        receiver.borrow_and_update();
        Self(receiver)
    }

    /// Waits for an announcement not yet taken in (at once if one came
    /// meanwhile), then takes in every one so far. Never resolves once the
    /// backend stopped announcing: only a reader's fallback looks remain.
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.0.borrow_and_update();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn announcements_coalesce_and_wake_every_handle_that_has_not_taken_them_in() {
        let (signal, first) = AppendSignal::channel();
        let mut a = first.fresh();
        let mut b = first.fresh();
        signal.announce();
        signal.announce();
        let soon = Duration::from_secs(1);
        tokio::time::timeout(soon, a.next()).await.expect("a wakes");
        tokio::time::timeout(soon, b.next()).await.expect("b wakes");
        // Both announcements were taken in by one wake.
        assert!(tokio::time::timeout(Duration::from_millis(20), a.next())
            .await
            .is_err());
        // A fresh handle does not wake for what came before it.
        let mut c = first.fresh();
        assert!(tokio::time::timeout(Duration::from_millis(20), c.next())
            .await
            .is_err());
        drop((first, a, b, c));
        assert!(signal.is_unheard());
    }
}
