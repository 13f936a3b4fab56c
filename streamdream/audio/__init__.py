"""Audio-reactive dreaming: loudness and onsets of the input's soundtrack set the dream's strength."""

from .follower import HOP, RATE, LoudnessFollower, strength_factor
from .react import AudioReact, LiveAudioTap, Timeline

__all__ = ["HOP", "RATE", "AudioReact", "LiveAudioTap", "LoudnessFollower", "Timeline", "strength_factor"]
