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
