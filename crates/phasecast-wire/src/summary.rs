//! What dashboards draw, derived once per state on the server: the Kuramoto order
//! parameter, the magnetisation, the energy and a phase histogram ([`Summary`]); and,
//! for a subscriber that takes fewer frames than there are states, the range of each
//! quantity over the states between two of its frames ([`Envelope`], folded by
//! [`EnvelopeFold`]). Computed in `f64` from the producer's state, sent as `f32`.

use std::f64::consts::{PI, TAU};

use crate::model::State;

/// Quantities derived from one state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Kuramoto order parameter r = |(1/N) Σ e^{iθ}|, in [0, 1].
    pub r: f32,
    /// Its angle ψ, in (-π, π]; 0 when r is 0.
    pub psi: f32,
    /// Mean spin, in [-1, 1]; 0 without spins.
    pub magnetization: f32,
    /// The state's energy.
    pub energy: f32,
    /// Phases per bin: wrapped into [0, 2π), bin k holds [k·2π/B, (k+1)·2π/B).
    pub histogram: Vec<u32>,
}

impl Summary {
    /// The summary of `state` with a histogram of `bins` bins (at least 1).
    pub fn of(state: &State, bins: usize) -> Summary {
        let bins = bins.max(1);
        let mut histogram = vec![0u32; bins];
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for &phase in &state.phases {
            let (sin, cos) = phase.sin_cos();
            re += cos;
            im += sin;
            // rem_euclid may round up to 2π itself: that is the last bin's edge.
            let k = (phase.rem_euclid(TAU) / TAU * bins as f64) as usize;
            histogram[k.min(bins - 1)] += 1;
        }
        let n = state.phases.len().max(1) as f64;
        let (re, im) = (re / n, im / n);
        let r = re.hypot(im);
        let psi = if r == 0.0 {
            0.0
        } else {
            let a = im.atan2(re);
            if a <= -PI {
                PI
            } else {
                a
            }
        };
        let magnetization = if state.spins.is_empty() {
            0.0
        } else {
            state.spins.iter().map(|s| f64::from(*s)).sum::<f64>() / state.spins.len() as f64
        };
        Summary {
            r: r.min(1.0) as f32,
            psi: psi as f32,
            magnetization: magnetization as f32,
            // An energy past f32's range is sent as its bound, never as infinity.
            energy: state.energy.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32,
            histogram,
        }
    }
}

/// Least, greatest and mean of one quantity over an envelope's states.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    /// Least value.
    pub min: f32,
    /// Greatest value.
    pub max: f32,
    /// Mean value.
    pub mean: f32,
}

/// The range of each summary quantity over consecutive states.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Envelope {
    /// How many states it covers.
    pub states: u32,
    /// Range of r.
    pub r: Range,
    /// Range of ψ (as sent, not unwrapped).
    pub psi: Range,
    /// Range of the magnetisation.
    pub magnetization: Range,
    /// Range of the energy.
    pub energy: Range,
}

/// One quantity's running least, greatest and sum.
#[derive(Debug, Clone, Copy)]
struct Running {
    min: f32,
    max: f32,
    sum: f64,
}

impl Default for Running {
    fn default() -> Running {
        Running {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }
}

impl Running {
    fn add(&mut self, v: f32) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += f64::from(v);
    }

    fn range(&self, n: u32) -> Range {
        Range {
            min: self.min,
            max: self.max,
            mean: (self.sum / f64::from(n)) as f32,
        }
    }
}

/// Folds summaries into an [`Envelope`]: [`EnvelopeFold::add`] each state's, then
/// [`EnvelopeFold::take`] at a frame.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeFold {
    states: u32,
    r: Running,
    psi: Running,
    magnetization: Running,
    energy: Running,
}

impl EnvelopeFold {
    /// Counts one more state.
    pub fn add(&mut self, s: &Summary) {
        self.states = self.states.saturating_add(1);
        self.r.add(s.r);
        self.psi.add(s.psi);
        self.magnetization.add(s.magnetization);
        self.energy.add(s.energy);
    }

    /// States folded since the last take.
    pub fn states(&self) -> u32 {
        self.states
    }

    /// The envelope of the states folded so far (`None` for none), starting again.
    pub fn take(&mut self) -> Option<Envelope> {
        let fold = std::mem::take(self);
        (fold.states > 0).then(|| Envelope {
            states: fold.states,
            r: fold.r.range(fold.states),
            psi: fold.psi.range(fold.states),
            magnetization: fold.magnetization.range(fold.states),
            energy: fold.energy.range(fold.states),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(phases: Vec<f64>, spins: Vec<i8>) -> State {
        State {
            step: 1,
            phases,
            spins,
            energy: -2.5,
            timestamp: None,
        }
    }

    #[test]
    fn synchronised_phases_have_r_one_and_their_angle() {
        let s = Summary::of(&state(vec![1.0; 8], vec![1, 1, 1, -1, 1, 1, 1, 1]), 4);
        assert!((s.r - 1.0).abs() < 1e-6);
        assert!((s.psi - 1.0).abs() < 1e-6);
        assert_eq!(s.magnetization, 0.75);
        assert_eq!(s.energy, -2.5);
        // 1 rad is in the first quarter of the circle.
        assert_eq!(s.histogram, vec![8, 0, 0, 0]);
    }

    #[test]
    fn opposed_phases_cancel_and_wrap_into_bins() {
        let phases = [0.0, PI, -PI / 2.0, 5.0 * PI / 2.0, PI / 2.0].map(|p| p + 0.1);
        let s = Summary::of(&state(phases.to_vec(), vec![]), 4);
        // Four cancel; the fifth, at π/2 + 0.1, is left: r = 1/5.
        assert!((s.r - 0.2).abs() < 1e-6, "r = {}", s.r);
        assert!((f64::from(s.psi) - (PI / 2.0 + 0.1)).abs() < 1e-5);
        assert_eq!(s.magnetization, 0.0);
        // 0.1 → bin 0; π + 0.1 → bin 2; -π/2 + 0.1 ≡ 3π/2 + 0.1 → bin 3;
        // 5π/2 + 0.1 ≡ π/2 + 0.1 → bin 1, as is π/2 + 0.1.
        assert_eq!(s.histogram, vec![1, 2, 1, 1]);
    }

    #[test]
    fn psi_is_the_angle_of_the_mean_in_its_half_open_range() {
        for k in -12..=12 {
            let angle = f64::from(k) * PI / 12.0;
            let s = Summary::of(&state(vec![angle - 0.1, angle + 0.1], vec![]), 2);
            let want = (angle.sin()).atan2(angle.cos());
            let want = if want <= -PI { PI } else { want };
            assert!(s.psi > -PI as f32 && s.psi <= PI as f32, "{}", s.psi);
            assert!((f64::from(s.psi) - want).abs() < 1e-5, "{angle}: {}", s.psi);
        }
    }

    #[test]
    fn an_envelope_keeps_the_extremes_and_the_mean() {
        let mut fold = EnvelopeFold::default();
        assert_eq!(fold.take(), None);
        for energy in [1.0, 9.0, 2.0] {
            fold.add(&Summary {
                energy,
                ..Summary::default()
            });
        }
        let e = fold.take().unwrap();
        assert_eq!(e.states, 3);
        assert_eq!((e.energy.min, e.energy.max, e.energy.mean), (1.0, 9.0, 4.0));
        assert_eq!(fold.states(), 0);
    }
}
