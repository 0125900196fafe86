//! Named, seeded PCC workloads: the demo producer, the example producer, the
//! benchmarks and the load generator all draw their states from here, so a figure in
//! `docs/benchmarks.md` can be reproduced exactly.
//!
//! | name | oscillators | what changes each step |
//! |---|---|---|
//! | `kuramoto-32`, `kuramoto-1024` (any `kuramoto-N`) | N | every phase moves (coupled oscillators at 200 Hz); spins flip rarely |
//! | `sparse` | 1024 | about 10% of phases move, 2% of spins flip |
//! | `static` | 1024 | only the step (and timestamp) |
//! | `random` | 1024 | everything: phases uniform in [0, 2π), spins random |

use std::f64::consts::TAU;

use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::model::State;

/// Time step of every workload: 200 states per simulated second.
pub const DT: f64 = 1.0 / 200.0;
/// Timestamp of step 0 (2026-01-01T00:00:00Z), so timestamps are reproducible.
const EPOCH: f64 = 1_767_225_600.0;

/// The workload names `named` accepts (besides any `kuramoto-N`).
pub const NAMES: [&str; 5] = ["kuramoto-32", "kuramoto-1024", "sparse", "static", "random"];

#[derive(Debug, Clone)]
enum Kind {
    Kuramoto {
        omega: Vec<f64>,
        coupling: f64,
        spin_coupling: f64,
    },
    Sparse,
    Static,
    Random,
}

/// A seeded source of PCC states.
#[derive(Debug, Clone)]
pub struct Workload {
    name: String,
    kind: Kind,
    rng: SmallRng,
    state: State,
}

impl Workload {
    /// The workload called `name`, seeded with `seed`.
    ///
    /// # Errors
    /// An unknown name.
    pub fn named(name: &str, seed: u64) -> Result<Workload, String> {
        if let Some(n) = name.strip_prefix("kuramoto-") {
            let n: usize = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name:?}: kuramoto-N needs a size N >= 1"))?;
            return Ok(Workload::kuramoto(n, seed));
        }
        let kind = match name {
            "sparse" => Kind::Sparse,
            "static" => Kind::Static,
            "random" => Kind::Random,
            _ => {
                return Err(format!(
                    "unknown workload {name:?}: use one of {} or kuramoto-N",
                    NAMES.join(", ")
                ))
            }
        };
        let mut rng = SmallRng::seed_from_u64(seed);
        let state = random_state(&mut rng, 1024);
        Ok(Workload {
            name: name.to_owned(),
            kind,
            rng,
            state,
        })
    }

    /// Kuramoto oscillators (natural frequencies around 0.5 Hz, coupled towards
    /// synchrony) with spins that align with the mean phase, flipping rarely.
    pub fn kuramoto(n: usize, seed: u64) -> Workload {
        let mut rng = SmallRng::seed_from_u64(seed);
        let omega = (0..n)
            .map(|_| TAU * (0.5 + 0.1 * normal(&mut rng)))
            .collect();
        let state = random_state(&mut rng, n);
        Workload {
            name: format!("kuramoto-{n}"),
            kind: Kind::Kuramoto {
                omega,
                coupling: 2.0,
                spin_coupling: 0.5,
            },
            rng,
            state,
        }
    }

    /// The workload's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next state.
    pub fn next_state(&mut self) -> State {
        let s = &mut self.state;
        s.step += 1;
        s.timestamp = Some(EPOCH + s.step as f64 * DT);
        let n = s.phases.len();
        match &self.kind {
            Kind::Kuramoto {
                omega,
                coupling,
                spin_coupling,
            } => {
                let (r, psi) = order_parameter(&s.phases);
                for (p, w) in s.phases.iter_mut().zip(omega) {
                    *p = (*p + DT * (w + coupling * r * (psi - *p).sin())).rem_euclid(TAU);
                }
                let mut alignment = 0.0;
                for (spin, p) in s.spins.iter_mut().zip(&s.phases) {
                    let field = spin_coupling * r * (p - psi).cos();
                    // Heat-bath flips, slowed so that a spin flips about once a minute.
                    let up = 1.0 / (1.0 + (-2.0 * field / 0.3).exp());
                    if self.rng.random::<f64>() < 0.0001 {
                        *spin = if self.rng.random::<f64>() < up { 1 } else { -1 };
                    }
                    alignment += f64::from(*spin) * (p - psi).cos();
                }
                s.energy = -0.5 * coupling * n as f64 * r * r - spin_coupling * r * alignment;
            }
            Kind::Sparse => {
                for _ in 0..n / 10 {
                    let i = self.rng.random_range(0..n);
                    s.phases[i] = (s.phases[i] + 0.05 * normal(&mut self.rng)).rem_euclid(TAU);
                }
                for _ in 0..n / 50 {
                    let i = self.rng.random_range(0..n);
                    s.spins[i] = -s.spins[i];
                }
                s.energy += 0.01 * normal(&mut self.rng);
            }
            Kind::Static => {}
            Kind::Random => {
                let step = s.step;
                *s = random_state(&mut self.rng, n);
                s.step = step;
                s.timestamp = Some(EPOCH + step as f64 * DT);
            }
        }
        s.clone()
    }
}

impl Iterator for Workload {
    type Item = State;

    fn next(&mut self) -> Option<State> {
        Some(self.next_state())
    }
}

/// The Kuramoto order parameter (r, ψ): how synchronised the phases are, and their mean.
pub fn order_parameter(phases: &[f64]) -> (f64, f64) {
    if phases.is_empty() {
        return (0.0, 0.0);
    }
    let (s, c) = phases
        .iter()
        .fold((0.0, 0.0), |(s, c), p| (s + p.sin(), c + p.cos()));
    let n = phases.len() as f64;
    ((s * s + c * c).sqrt() / n, s.atan2(c))
}

fn random_state(rng: &mut SmallRng, n: usize) -> State {
    State {
        step: 0,
        phases: (0..n).map(|_| rng.random::<f64>() * TAU).collect(),
        spins: (0..n)
            .map(|_| if rng.random::<bool>() { 1 } else { -1 })
            .collect(),
        energy: normal(rng),
        timestamp: Some(EPOCH),
    }
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Limits;

    #[test]
    fn every_named_workload_is_valid_and_reproducible() {
        for name in NAMES {
            let a: Vec<State> = Workload::named(name, 7).unwrap().take(50).collect();
            let b: Vec<State> = Workload::named(name, 7).unwrap().take(50).collect();
            assert_eq!(a, b, "{name}");
            for s in &a {
                s.validate(&Limits::default()).unwrap();
            }
            assert_eq!(a[49].step, 50);
        }
        assert!(Workload::named("kuramoto-0", 1).is_err());
        assert!(Workload::named("chaos", 1).is_err());
    }

    #[test]
    fn workloads_change_what_they_say() {
        let changed = |name: &str| {
            let mut w = Workload::named(name, 3).unwrap();
            let a = w.next_state();
            let b = w.next_state();
            let phases = a
                .phases
                .iter()
                .zip(&b.phases)
                .filter(|(x, y)| x != y)
                .count();
            let spins = a.spins.iter().zip(&b.spins).filter(|(x, y)| x != y).count();
            (phases, spins, a.len())
        };
        let (p, _, n) = changed("kuramoto-32");
        assert_eq!((p, n), (32, 32));
        let (p, s, n) = changed("sparse");
        assert!(p > n / 20 && p <= n / 10 && s > 0 && s <= n / 50, "{p} {s}");
        assert_eq!(changed("static").0, 0);
        assert!(changed("random").0 > 1000);
    }

    #[test]
    fn kuramoto_synchronises() {
        let mut w = Workload::kuramoto(64, 1);
        let r0 = order_parameter(&w.next_state().phases).0;
        let r1 = order_parameter(&w.nth(4000).unwrap().phases).0;
        assert!(r1 > r0 && r1 > 0.5, "r0 {r0} r1 {r1}");
    }
}
