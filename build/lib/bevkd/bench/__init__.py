"""`bevkd bench`: the paper table reproduced on SynthScenes (plan, runner, report, latency)."""
