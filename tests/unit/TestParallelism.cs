// Fixtures run in parallel (tests inside a fixture one after another, as they share its fields).
// Simulated tests own their thread and clock, so a busy neighbour slows them but changes nothing;
// fixtures that hold machine-wide resources (processes, fixed ports) say [NonParallelizable].
[assembly: Parallelizable(ParallelScope.Fixtures)]
