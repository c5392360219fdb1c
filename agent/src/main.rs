fn main() -> std::process::ExitCode {
    tokenwatch::cli::main()
}
