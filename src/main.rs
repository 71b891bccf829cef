fn main() -> std::process::ExitCode {
    laneq::cli::main()
}
