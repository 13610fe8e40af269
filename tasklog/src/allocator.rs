//! The allocator of every Tasklog process (the binary and its benches).
//!
//! Many small allocations across threads (events, rows, JSON): mimalloc
//! spends far less time in malloc and free than glibc's allocator here.

pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v3, as the
/// `libmimalloc-sys` in use builds it; its bindings leave this one unnamed).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed stays with the process before mimalloc hands it
/// back to the OS, in milliseconds.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Keeps freed memory [`PURGE_DELAY_MS`] instead of mimalloc's one second,
/// unless `MIMALLOC_PURGE_DELAY` says otherwise. A rebuild frees and takes
/// again hundreds of megabytes a second, and each page handed back is
/// faulted in and zeroed anew when taken again: with the default, a
/// 1M-event analytics rebuild took 72,000–112,000 page faults and about a
/// fifth of its CPU in them (700–11,000 with this). Memory left idle still
/// goes back. Call it first thing in `main`, before other threads start.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a number mimalloc reads when it next purges; mimalloc's
    // options are not synchronized, hence before other threads run.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as _) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option is found by number: the number must still name the purge
    /// delay, whose default (one second) no neighbour shares.
    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // SAFETY: reads an option.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(default, 1_000, "mimalloc's default purge delay");
        configure();
        // SAFETY: reads an option.
        let set = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(set as i64, PURGE_DELAY_MS);
    }
}
