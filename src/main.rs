//! The `sgcache` binary: a thin shell around [`sgcache::cli::main`].
fn main() -> std::process::ExitCode {
    sgcache::cli::main()
}
