/**
 * Runs a job's steps in order, each even when one before it failed, so that one failing rule
 * does not stop the others for good; then throws what failed, naming the steps.
 */
export async function runSteps<K extends string>(
  what: string,
  steps: Record<K, () => Promise<number>>,
): Promise<Record<K, number>> {
  const results = {} as Record<K, number>;
  const failures: string[] = [];
  for (const name of Object.keys(steps) as K[]) {
    try {
      results[name] = await steps[name]();
    } catch (err) {
      results[name] = 0;
      failures.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failures.length) throw new Error(`${what} failed: ${failures.join("; ")}`);
  return results;
}
