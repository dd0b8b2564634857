//! The gateway's allocator: mimalloc, which serves the request path's many
//! small allocations faster than the system allocator (benches/README.md,
//! "The request's own work and the allocator"), kept from holding on to
//! the memory compiling plugins takes.
//!
//! mimalloc keeps freed memory to reuse it, returning it to the kernel
//! only after a delay and only from the thread that freed it. Compiling a
//! plugin (on a blocking thread and wasmtime's compile threads) frees far
//! more than serving ever uses again, and those threads then sit idle, so
//! that memory would stay with the process. So while plugins compile,
//! freed memory is returned at once; when the last compile ends, every
//! compile thread hands back what it still holds, and the usual delay
//! comes back for serving.

use weir_plugins::engine::{CompileMemory, set_compile_memory};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (v2 and v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc.h (v2 and v3): milliseconds before
/// freed memory is returned to the kernel.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc's default purge delay (v3).
#[cfg(test)]
const DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Arena memory is committed as it is used, not a whole arena at once, so
/// that memory handed back leaves the process's resident set. mimalloc
/// reads the option when it reserves its first arena, at the first
/// allocation, which comes before `main`: so this runs earlier still, from
/// the ELF constructors the loader runs before the Rust runtime starts.
#[cfg(target_os = "linux")]
#[used]
#[allow(unsafe_code)]
#[unsafe(link_section = ".init_array")]
static COMMIT_AS_USED: extern "C" fn() = commit_as_used;

#[allow(unsafe_code)]
extern "C" fn commit_as_used() {
    // SAFETY: setting an option has no preconditions; mimalloc reads it
    // when it next needs it.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}

/// Set the allocator up; call first thing in `main`.
pub fn install() {
    set_compile_memory(Box::new(HandBack::new()));
}

/// Returns what compiles freed (see the module docs).
struct HandBack {
    /// The purge delay for serving: read once, before any compile, so
    /// that a compile starting while another's end is under way cannot
    /// take the compile's delay for the serving one.
    serving_delay: std::ffi::c_long,
}

#[allow(unsafe_code)]
impl HandBack {
    fn new() -> HandBack {
        // SAFETY: reading an option has no preconditions.
        let serving_delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        HandBack { serving_delay }
    }
}

#[allow(unsafe_code)]
impl CompileMemory for HandBack {
    fn begin(&self) {
        // SAFETY: setting an option has no preconditions.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }

    fn end(&self) {
        // SAFETY: `mi_collect` only returns the calling thread's free
        // memory; it is safe on any thread, at any time.
        rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
        unsafe {
            libmimalloc_sys::mi_collect(true);
            libmimalloc_sys::mi_option_set(PURGE_DELAY, self.serving_delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers name the options meant, and the constructor ran
    /// before the first allocation: eager commit is off, the purge delay is
    /// mimalloc's default, and a compile's hand-back puts it back.
    #[test]
    #[allow(unsafe_code)]
    fn options_are_set_and_restored() {
        // SAFETY: reading an option has no preconditions.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(get(ARENA_EAGER_COMMIT), 0);
        assert_eq!(get(PURGE_DELAY), DEFAULT_PURGE_DELAY_MS);
        let hand_back = HandBack::new();
        hand_back.begin();
        assert_eq!(get(PURGE_DELAY), 0, "freed memory goes back at once while compiling");
        hand_back.end();
        assert_eq!(get(PURGE_DELAY), DEFAULT_PURGE_DELAY_MS);
    }
}
