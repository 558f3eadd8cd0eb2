"""Training: ``train`` (setting up a run and its fit), the engine (loop, optimizer, callbacks,
fit), recipe defaults, the start-of-run summary, the sweep and the demo. It may use serving to
test and report the run it finished."""
