//! The `sgcache` binary: a thin shell around [`sgcache::commands::main`].
fn main() -> std::process::ExitCode {
    sgcache::commands::main()
}
