use std::time::Instant;
use cedar_policy::{Context, RestrictedExpression};
fn main() {
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(RestrictedExpression::new_ip("10.0.0.5")); }
    println!("new_ip: {:?}", t.elapsed() / n);
    let ip = RestrictedExpression::new_ip("10.0.0.5");
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Context::from_pairs([("source_ip".to_string(), ip.clone())]).unwrap()); }
    println!("context with cached ip expr: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Context::from_pairs([("x".to_string(), RestrictedExpression::new_long(5))]).unwrap()); }
    println!("context with one long: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Context::from_pairs((0..14).map(|i| (format!("x{i}"), RestrictedExpression::new_long(5)))).unwrap()); }
    println!("context with 14 longs: {:?}", t.elapsed() / n);
}
