//! The process heap.

/// Returns free heap to the system: after loading (parsing the 17 MB tokenizer.json and
/// dequantising the blob free far more than they keep) and after a burst of large request
/// bodies (`http::bodies`); glibc holds on to it otherwise.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for every thread, set before any thread starts. glibc gives each thread
/// that allocates at once its own arena, and each keeps its own high-water mark: with two
/// inference threads the service held 157 MB after a 32-caller burst, against 122 MB with one
/// arena at the same turns/s (BENCHMARKS.md, "Memory and start-up").
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's settings; called first thing in `main`.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
