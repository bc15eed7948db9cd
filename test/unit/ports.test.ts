import { describe, expect, it } from 'vitest';
import { freePorts } from '../../src/simulators/ports.ts';

describe('freePorts', () => {
  it('gives as many different ports as asked: one run never puts two services on one port', async () => {
    for (let round = 0; round < 20; round++) {
      const ports = await freePorts(5);
      expect(new Set(ports).size).toBe(5);
    }
  });
});
