//! The process's allocator: jemalloc, set up to give freed memory back to the system.
//!
//! Decoding a config allocates far more than the result keeps (the descriptor pool, the
//! intermediate messages, the JSON for `/config_dump`): about 20 KiB per cluster that
//! glibc's malloc would keep mapped for the life of the process. jemalloc's background
//! threads return unused pages after its decay time (10 s), and [`release_freed`]
//! returns them at once after start-up.

use tikv_jemalloc_ctl::{arenas, background_thread, Access, AsName};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background purging threads.
pub fn init() {
    if let Err(e) = background_thread::write(true) {
        tracing::debug!(error = %e, "jemalloc background threads not started");
    }
}

/// Purges every arena's unused pages now: each arena's dirty decay time is set to 0
/// (which purges) and then back to what it was.
pub fn release_freed() {
    let Ok(n) = arenas::narenas::read() else {
        return;
    };
    for i in 0..n {
        let key = format!("arena.{i}.dirty_decay_ms\0");
        let name = key.as_bytes().name();
        let Ok(ms) = Access::<isize>::read(name) else {
            continue;
        };
        let _ = name.write(0isize);
        let _ = name.write(ms);
    }
}

/// The allocator's counters for `server.memory_*` and admin `/memory`: bytes allocated,
/// mapped and resident (jemalloc's `stats.allocated`, `stats.mapped`, `stats.resident`).
pub fn stats() -> ferry_proxy::stats::Memory {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counters are refreshed when the epoch advances.
    let _ = epoch::advance();
    ferry_proxy::stats::Memory {
        allocated: stats::allocated::read().unwrap_or(0) as u64,
        heap_size: stats::mapped::read().unwrap_or(0) as u64,
        physical_size: stats::resident::read().unwrap_or(0) as u64,
    }
}
