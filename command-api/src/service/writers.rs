//! Writers to one stream take turns within the process.

/// Writers to one stream within this process take turns: two requests on
/// the same project or task would otherwise load the same version, and all
/// but one would lose the append and decide again, over and over under a
/// burst (a reconnecting pool lets them all in at once). Conflicts remain
/// only between processes. Streams share a fixed set of locks by hash, so
/// memory stays bounded; an unlucky pair of streams merely takes turns too.
pub struct StreamWriters {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl StreamWriters {
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: Default::default(),
        }
    }

    /// This process's turn to write `stream`, held until the guard drops.
    pub async fn turn(&self, stream: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let stripe = self.hasher.hash_one(stream) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
