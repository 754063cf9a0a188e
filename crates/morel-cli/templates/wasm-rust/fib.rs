//! fib, a function of {{app}}: reads a number n on stdin (a JSON number such as `10`) and
//! prints the n-th Fibonacci number as JSON on stdout (`{"n": 10, "fib": 55}`). A WASI
//! command: Morel runs `main` once per call, the JSON body of the call on stdin. Bad input: a
//! message on stderr and exit 1, which fails the call. One file, edition 2021, std only.

use std::io::Read;
use std::process::ExitCode;

/// fib(186) is the largest that fits in a u128.
const MAX_N: u32 = 186;

fn fib(n: u32) -> u128 {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        // b runs one ahead of a: at n = MAX_N it is fib(187), past u128, and is never used.
        let next = a.wrapping_add(b);
        a = b;
        b = next;
    }
    a
}

/// The answer to one input, or the message for stderr.
fn answer(input: &str) -> Result<String, String> {
    match input.trim().parse::<u32>() {
        Ok(n) if n <= MAX_N => Ok(format!("{{\"n\": {n}, \"fib\": {}}}", fib(n))),
        _ => Err(format!(
            "fib: input must be a whole number from 0 to {MAX_N}, got {:?}",
            input.trim()
        )),
    }
}

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("fib: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    match answer(&input) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

// Run without Morel: tests/check.sh (rustc --test). Morel's build leaves them out.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers() {
        assert_eq!(answer("10"), Ok("{\"n\": 10, \"fib\": 55}".to_owned()));
        assert_eq!(answer(" 0\n"), Ok("{\"n\": 0, \"fib\": 0}".to_owned()));
    }

    #[test]
    fn the_largest_fits() {
        assert_eq!(fib(MAX_N), 332825110087067562321196029789634457848);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(answer("-1").is_err());
        assert!(answer("187").is_err());
        assert!(answer("\"ten\"").is_err());
    }
}
