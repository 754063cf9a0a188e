//! Fib: reads a number n on stdin (a JSON number such as `10`) and prints the n-th
//! Fibonacci number as JSON on stdout (`{"n": 10, "fib": 55}`). A WASI command: Morel runs
//! `main` once per call.

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

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("fib: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let n: u32 = match input.trim().parse() {
        Ok(n) if n <= MAX_N => n,
        _ => {
            eprintln!("fib: input must be a whole number from 0 to {MAX_N}, got {:?}", input.trim());
            return ExitCode::FAILURE;
        }
    };
    println!("{{\"n\": {n}, \"fib\": {}}}", fib(n));
    ExitCode::SUCCESS
}
