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
