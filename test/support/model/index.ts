/** The model harness: schedules, the world that runs them, and the invariants it checks. */
export * from './arbitraries';
export { ModelWorld, type ModelOptions, type ModelStats } from './world';
