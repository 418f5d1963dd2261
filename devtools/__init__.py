"""Developer tools: the local stack, the signed-webhook sender, sample events, benchmarks."""
