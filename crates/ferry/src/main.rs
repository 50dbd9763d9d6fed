fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    match ferry_config::load(&text, ferry_config::Format::from_path(path.as_ref())) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "ok: {} listeners {} clusters",
                l.bootstrap.listeners.len(),
                l.bootstrap.clusters.len()
            );
        }
        Err(e) => {
            println!("{e}");
            std::process::exit(1)
        }
    }
}
