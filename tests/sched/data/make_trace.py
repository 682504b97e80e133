#!/usr/bin/env python3
"""Writes load_trace.csv: four days of a web service's load, one point per
5 minutes (minute, load in instance-CPUs): a night trough, a steep morning
ramp at 08:00, a lunch dip, an evening peak at 20:00; each day 5% busier
than the one before, a little deterministic noise, and on day 3 a
one-hour burst at 15:00 that no profile has seen. The trace is data: this
script only documents how it was made.

  /usr/bin/python3 make_trace.py > load_trace.csv
"""
import math
import random

rnd = random.Random(20261201)
print('# minute,load (instance-CPUs); see make_trace.py')
for day in range(4):
    scale = 1.05 ** day
    for step in range(288):
        minute = day * 1440 + step * 5
        h = step * 5 / 60.0
        base = 6.0
        morning = 34.0 / (1 + math.exp(-(h - 8.3) * 12))         # steep ramp at 08:00 (10-90% in 22 min)
        evening = 18.0 * math.exp(-((h - 20.0) / 0.7) ** 2)      # evening peak
        lunch = -6.0 * math.exp(-((h - 12.5) / 0.6) ** 2)        # lunch dip
        night = -34.0 / (1 + math.exp(-(h - 22.8) * 3))          # late-night fall
        load = (base + morning + evening + lunch + night) * scale
        if day == 2 and 15.0 <= h < 16.0:
            load *= 1.6                                           # the unseen burst
        load *= 1 + rnd.uniform(-0.03, 0.03)
        print('%d,%.3f' % (minute, max(load, 1.0)))
