/**
 * A `group by status` count read as one figure per state: every state asked for is there (0 where no row names it),
 * so the overview's shape never depends on which states happen to be empty.
 */
export function countByState<S extends string>(
  states: readonly S[],
  rows: readonly { readonly status: string; readonly n: number }[],
): Record<S, number> {
  const counts: Record<string, number> = Object.fromEntries(states.map((s) => [s, 0]));
  for (const row of rows) counts[row.status] = (counts[row.status] ?? 0) + row.n;
  return counts;
}
