"""calibrate.band_thresholds: band.low at a recall target, band.high at a precision target, one threshold
when a single one meets both."""

from __future__ import annotations

import numpy as np
import pytest

from condpt.calibrate import CalibrationError, band_thresholds

# Clean documents low, bad ones high, an overlap in the middle: 0.3 and 0.4 are each one clean, one bad.
SCORES = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.3, 0.4, 0.6, 0.8, 0.9])
LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])


def test_band_from_recall_and_precision_targets():
    band = band_thresholds(SCORES, LABELS, recall=1.0, precision=1.0)
    # every bad document scores >= 0.3; the bad tag is only fully precise from 0.6 on
    assert (band["low"], band["high"]) == (0.3, 0.6)
    assert band["recall_at_low"] == 1.0 and band["precision_at_high"] == 1.0
    assert band["band_fraction"] == pytest.approx(0.4)  # 0.3, 0.4, 0.3, 0.4 are uncertain
    assert (band["n"], band["positives"]) == (10, 5)


def test_one_threshold_when_it_meets_both_targets():
    # recall 0.6 holds up to 0.6, precision 0.6 already from 0.2 (5 bad of 8): 0.2 meets both targets
    band = band_thresholds(SCORES, LABELS, recall=0.6, precision=0.6)
    assert band["low"] == band["high"] == 0.2 and band["band_fraction"] == 0.0
    assert band["recall_at_low"] >= 0.6 and band["precision_at_high"] >= 0.6


def test_band_needs_positive_labels():
    with pytest.raises(CalibrationError, match="no positive"):
        band_thresholds(SCORES, np.zeros(10, int), recall=0.9, precision=0.9)
