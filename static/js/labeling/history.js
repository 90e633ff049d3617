// Undo / redo for the labeling page: a bounded list of snapshots of the page's regions,
// one per completed user action (a drawn region, a corner or region drag on release, a
// brush stroke, a delete, a turned start, a flag or category change, a LaTeX field edited).
//
// A snapshot is whatever `capture()` returns: { key, size, ... }. `key` tells two states
// apart (a snapshot equal to the current one is not pushed: a click that changed nothing
// is no step); `size` is its estimated cost in characters, so that the list holds at most
// `limit` steps and about `budget` characters (masks are kept as COCO RLE, and an RLE
// unchanged since the step before is shared, not copied, so `size` counts only new ones).

export class History {
  constructor({ limit = 100, budget = 16_000_000, onChange = () => {} } = {}) {
    this.limit = limit;
    this.budget = budget;
    this.onChange = onChange;
    this.reset(null);
  }

  // Forget every step; `snap` (the state just loaded) is the one undo goes back to last.
  reset(snap) {
    this.past = snap ? [snap] : [];  // past[past.length - 1] is the current state
    this.future = [];
    this.onChange(this);
  }

  get current() { return this.past[this.past.length - 1] || null; }
  get canUndo() { return this.past.length > 1; }
  get canRedo() { return this.future.length > 0; }

  // Record `snap` as the state after an action; false when nothing changed.
  push(snap) {
    const cur = this.current;
    if (cur && cur.key === snap.key) return false;
    this.past.push(snap);
    this.future = [];  // a new action after an undo: what was undone cannot come back
    this.trim();
    this.onChange(this);
    return true;
  }

  // The state to go back to, or null.
  undo() {
    if (!this.canUndo) return null;
    this.future.push(this.past.pop());
    this.onChange(this);
    return this.current;
  }

  // The state to go forward to, or null.
  redo() {
    if (!this.canRedo) return null;
    this.past.push(this.future.pop());
    this.onChange(this);
    return this.current;
  }

  trim() {
    let total = this.past.reduce((n, s) => n + (s.size || 0), 0);
    while (this.past.length > 1 && (this.past.length > this.limit + 1 || total > this.budget)) {
      total -= this.past.shift().size || 0;
    }
  }
}
