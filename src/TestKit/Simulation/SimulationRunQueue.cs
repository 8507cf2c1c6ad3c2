using System.Runtime.CompilerServices;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// The ready work items and the strategy that picks the next one. Not thread-safe: the executor
/// guards it with its lock.
/// </summary>
internal sealed class SimulationRunQueue
{
    private readonly List<SimulationWorkItem> _items = [];
    private readonly ScheduleStrategy _strategy;
    private readonly Random _random;
    private readonly ConditionalWeakTable<object, StrongBox<int>> _priorities = new();
    private readonly long[] _changePoints;
    private int _head;
    private long _taken;
    private int _nextChangePoint;
    private int _lowestPriority;

    public SimulationRunQueue(ScheduleStrategy strategy, Random random, int pctDepth, int pctStepBound)
    {
        _strategy = strategy;
        _random = random;
        if (strategy == ScheduleStrategy.Pct)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(pctDepth, 1);
            ArgumentOutOfRangeException.ThrowIfLessThan(pctStepBound, 1);
            _changePoints = new long[pctDepth - 1];
            for (var i = 0; i < _changePoints.Length; i++) _changePoints[i] = 1 + random.NextInt64(pctStepBound);
            Array.Sort(_changePoints);
            // Initial priorities stay above every value a change point hands out.
            _lowestPriority = pctDepth;
        }
        else
        {
            _changePoints = [];
        }
    }

    public int Count => _items.Count - _head;

    public void Add(in SimulationWorkItem item) => _items.Add(item);

    /// <summary>Takes the next item; <paramref name="index"/> is its position among the <paramref name="ready"/> items (trace input).</summary>
    public bool TryTake(out SimulationWorkItem item, out int ready, out int index)
    {
        ready = Count;
        if (ready == 0)
        {
            item = default;
            index = -1;
            return false;
        }
        index = _strategy switch
        {
            ScheduleStrategy.Random => _random.Next(ready),
            ScheduleStrategy.Pct => HighestPriority(),
            _ => 0,
        };
        item = _items[_head + index];
        if (index == 0)
        {
            _items[_head] = default;
            _head++;
        }
        else
        {
            // Keeps the others in arrival order, which PCT's tie-break relies on.
            _items.RemoveAt(_head + index);
        }
        if (_head > 1024 && _head * 2 > _items.Count)
        {
            _items.RemoveRange(0, _head);
            _head = 0;
        }
        _taken++;
        if (_strategy == ScheduleStrategy.Pct) ApplyChangePoint(item.FlowKey);
        return true;
    }

    public IEnumerable<Task> Tasks()
    {
        for (var i = _head; i < _items.Count; i++)
            if (_items[i].Task is { } task) yield return task;
    }

    private int HighestPriority()
    {
        var best = 0;
        var bestPriority = int.MinValue;
        for (var i = 0; i < Count; i++)
        {
            var priority = PriorityOf(_items[_head + i].FlowKey);
            if (priority > bestPriority)
            {
                best = i;
                bestPriority = priority;
            }
        }
        return best;
    }

    private int PriorityOf(object flow) =>
        _priorities.GetValue(flow, _ => new StrongBox<int>(_random.Next(_changePoints.Length + 1, int.MaxValue))).Value;

    private void ApplyChangePoint(object flow)
    {
        while (_nextChangePoint < _changePoints.Length && _changePoints[_nextChangePoint] <= _taken)
        {
            _nextChangePoint++;
            _ = PriorityOf(flow);
            _priorities.GetValue(flow, _ => new StrongBox<int>()).Value = --_lowestPriority;
        }
    }
}
