/** The seeded generator lives with the simulators: the demo draws its plan from it too. */
export { Rng, randomSeed } from '../src/simulators/rng.ts';
