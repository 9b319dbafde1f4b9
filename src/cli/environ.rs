//! The process environment, set up once before any thread or child exists.
//!
//! A process's initial environment block stays readable to every process of the same user
//! through `/proc/PID/environ` for as long as it runs, whatever `unsetenv` does afterwards: a
//! pipeline stage could read `AUDITAI_SIGNING_KEY`, cloud credentials or an auditor's tokens
//! from `/proc/$PPID/environ`. So auditai copies every variable into its own (heap) environment
//! and overwrites the initial block with zeros; `/proc/PID/environ` then shows nothing. Stages
//! and reruns are started with a cleared environment plus what they declare. What a same-user
//! process can still see is documented in docs/security.md (its memory, where the kernel lets a
//! process trace its parent).

use std::ffi::{CStr, c_char};

unsafe extern "C" {
    /// The C library's environment array (POSIX).
    static mut environ: *mut *mut c_char;
}

/// Set auditai's environment defaults and hide the initial environment block.
///
/// Must run first in `main`, while the process has one thread.
pub(super) fn prepare() {
    // SAFETY: called at the start of `main`, before any other thread exists, so nothing reads
    // or writes the environment concurrently.
    // The block is hidden first: its strings must be collected before any `setenv`, which
    // allocates (and may later reuse) strings of its own that must not be zeroed.
    unsafe {
        hide_initial_block();
        defaults();
    }
    thread_pool();
    allocator();
}

/// Keep large freed buffers for reuse. glibc serves each allocation above a sliding threshold
/// with a fresh `mmap` and returns it on `free`, so a training step that allocates the same
/// activation and gradient buffers again page-faults through zeroed memory every time (measured:
/// up to a third of the step on a wide MLP). Above 32 MiB allocations still get their own
/// mapping, and up to 256 MiB of free heap is kept before it is returned to the system.
fn allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// The main thread joins rayon's pool as worker 0 (`RAYON_NUM_THREADS` threads in all, default
/// one per core). burn's flex backend, the fused optimizer and hashing split their work with
/// rayon; from a worker, a task too small to split runs inline instead of being handed to another
/// thread and waited for, which on small models cost more than the task (a handoff per tensor
/// operation). Results do not depend on this: every parallel kernel auditai uses gives the same
/// bits on any thread count.
fn thread_pool() {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // With one thread in all, the main thread would be the pool's only worker, and work handed
    // to the pool from another thread (a pipeline's stage) would wait for it forever: keep
    // rayon's own pool of one worker then.
    if threads < 2 {
        return;
    }
    // Fails only when a pool already exists, which then serves as before.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .build_global();
}

/// Environment defaults for the libraries auditai uses.
///
/// SAFETY: the caller guarantees a single thread.
unsafe fn defaults() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // burn materialises restored optimizer state on its default device, which prefers wgpu
        // and panics where no adapter exists. Pin the default to the CPU; auditai always names
        // its training device explicitly.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none()
    {
        // Mesa's Vulkan device-select layer asks the Wayland session which GPU to prefer, and
        // without a session it prints `XDG_RUNTIME_DIR is invalid or not set` four times on a
        // successful run. With no session there is no preference to read: skip the layer.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// Copy every variable to the heap, then zero the strings of the initial block.
///
/// SAFETY: the caller guarantees a single thread.
unsafe fn hide_initial_block() {
    // The initial strings: where they are and how long, read before anything changes them.
    let mut initial: Vec<(*mut c_char, usize)> = Vec::new();
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings (POSIX); nothing
    // else touches it while this single thread runs.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            initial.push((*p, CStr::from_ptr(*p).to_bytes().len()));
            p = p.add(1);
        }
    }
    let vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    // SAFETY: single thread (above). clearenv drops the C library's array; set_var rebuilds it
    // from heap copies, so no pointer refers to the initial strings afterwards.
    unsafe {
        libc::clearenv();
        for (k, v) in &vars {
            std::env::set_var(k, v);
        }
        for (ptr, len) in initial {
            std::ptr::write_bytes(ptr, 0, len);
        }
    }
}
