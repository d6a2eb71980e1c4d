//! Measurement noise models (to be written).
