#!/usr/bin/env python3
"""Writes data.lp, the line protocol test_influx_oracle.py loads into both InfluxDB 1.6.7 and
Nimbus. Deterministic (a seeded PRNG, fixed timestamps from 2024-05-01T00:00:00Z); rerun only
when the data should change, then regenerate the goldens (NIMBUS_ORACLE_REGEN=1 with influxd).

Sections start with `# precision=<unit>`: the test POSTs each section's lines with that
precision, in batches.

    /usr/bin/python3 tests/clients/influx_oracle/make_data.py > tests/clients/influx_oracle/data.lp
"""

import math
import random
import sys

DAY0 = 1714521600  # 2024-05-01T00:00:00Z
DAY = 86400


def sensor_reading(rng, out):
    """The tutorial's measurement: 20 devices over 2 days, a reading every 56..94 s, with gaps."""
    out.append("# sensor_reading: 20 devices, 2 days, every 56..94 s, with gaps")
    out.append("# precision=s")
    for i in range(1, 21):
        device = "pi-%03d" % i
        start = DAY0 + 7 * i
        end = DAY0 + 2 * DAY
        if i == 19:
            start = DAY0 + DAY // 2  # joins at noon on day 1
        if i == 20:
            end = DAY0 + DAY  # gone after day 1
        # one gap of 15..60 minutes per device, and a long one (6 h) for pi-007
        gap_start = DAY0 + ((i * 5) % 48) * 3600 + 600
        gap_end = gap_start + ((i % 4) + 1) * 900
        t = start
        phase = i * 0.37
        while t < end:
            in_gap = gap_start <= t < gap_end
            if i == 7 and DAY0 + 30 * 3600 <= t < DAY0 + 36 * 3600:
                in_gap = True
            if not in_gap:
                day_frac = 2 * math.pi * (t - DAY0) / DAY
                temperature = round(21 + 4 * math.sin(day_frac + phase) + rng.uniform(-0.5, 0.5)
                                    + (i % 5) * 0.3, 2)
                humidity = round(55 + 12 * math.cos(day_frac + phase) + rng.uniform(-1, 1), 1)
                if rng.random() < 0.03:
                    # now and then a reading without humidity
                    out.append("sensor_reading,device_id=%s temperature=%r %d"
                               % (device, temperature, t))
                else:
                    out.append("sensor_reading,device_id=%s temperature=%r,humidity=%r %d"
                               % (device, temperature, humidity, t))
            t += 75 + rng.randint(-19, 19)


def device_status(rng, out):
    """Integer, boolean and string fields (1.6.7 has no unsigned), two tags, every 30 min."""
    out.append("# device_status: integer, boolean and string fields")
    out.append("# precision=s")
    firmware = ["1.0.0", "1.0.1", "1.1.0-beta", 'v2 \\"rc\\"', "a,b=c d"]
    for i in range(1, 6):
        device = "pi-%03d" % i
        site = "lab" if i % 2 else "field"
        uptime = 1000 * i
        for k in range(0, 96):  # 2 days, every 30 minutes
            t = DAY0 + k * 1800 + 11 * i
            uptime += 1800 + rng.randint(0, 5)
            if i == 3 and k == 40:
                uptime = 5  # a reboot
            rssi = -40 - rng.randint(0, 50)
            online = "true" if rng.random() > 0.15 else "false"
            fw = firmware[(k // 24 + i) % len(firmware)]
            battery = round(3.3 + rng.uniform(0, 0.9), 3)
            out.append('device_status,device_id=%s,site=%s rssi=%di,online=%s,uptime=%di,'
                       'firmware="%s",battery=%r %d'
                       % (device, site, rssi, online, uptime, fw, battery, t))
    # a boolean spelled every way the protocol allows, on a series of its own
    spellings = ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
    for k, word in enumerate(spellings):
        out.append("device_status,device_id=pi-099,site=lab online=%s %d" % (word, DAY0 + 60 * k))


def vibration(rng, out):
    """A point-dense series: press-1 every 100 ms for 10 minutes, press-2 every 250 ms for 5."""
    out.append("# vibration: dense series (ms precision)")
    out.append("# precision=ms")
    base = (DAY0 + 3600) * 1000  # 01:00:00Z on day 1
    for k in range(6000):
        t = base + k * 100
        x = round(math.sin(k / 50.0) + rng.gauss(0, 0.05), 4)
        y = round(math.cos(k / 37.0) * 0.5 + rng.gauss(0, 0.05), 4)
        out.append("vibration,machine=press-1 accel_x=%r,accel_y=%r %d" % (x, y, t))
    for k in range(1200):
        t = base + 300_000 + k * 250
        x = round(0.3 * math.sin(k / 20.0) + rng.gauss(0, 0.02), 4)
        out.append("vibration,machine=press-2 accel_x=%r %d" % (x, t))


def cpu(rng, out):
    """Four hosts in two regions, every 5 minutes over day 1 (GROUP BY *, SLIMIT...)."""
    out.append("# cpu: host x region, every 5 min on day 1")
    out.append("# precision=s")
    hosts = [("server01", "us-west"), ("server02", "us-west"), ("server03", "eu-central"),
             ("server04", "eu-central")]
    for k in range(288):
        t = DAY0 + k * 300
        for n, (host, region) in enumerate(hosts):
            if n == 3 and 100 <= k < 140:
                continue
            user = round(10 + 30 * rng.random() + 10 * n, 2)
            system = round(2 + 8 * rng.random(), 2)
            out.append("cpu,host=%s,region=%s usage_user=%r,usage_system=%r %d"
                       % (host, region, user, system, t))


def counter(rng, out):
    """Integers only (sum, mean, spread of integers), nanosecond precision with odd nanoseconds."""
    out.append("# counter: integer field, ns precision")
    out.append("# precision=ns")
    total = 0
    for k in range(200):
        t = (DAY0 + 7200 + k * 37) * 1_000_000_000 + (k * 123457) % 1_000_000_000
        total += rng.randint(0, 1000)
        out.append("counter,host=a requests=%di,errors=%di %d" % (total, rng.randint(0, 3), t))
    out.append("counter,host=b requests=-5i,errors=0i %d" % ((DAY0 + 7200) * 1_000_000_000))
    out.append("counter,host=b requests=9223372036854775807i,errors=1i %d"
               % ((DAY0 + 7260) * 1_000_000_000))


def special(rng, out):
    """Names needing escapes: spaces, commas and '=' in measurement/tag/field keys and values,
    quotes in tag values, UTF-8."""
    out.append("# special characters")
    out.append("# precision=s")
    t = DAY0 + 5000
    out.append("weird\\ meas\\,urement,tag\\ key=va\\ l\\,u\\=e,loc=a\\=b "
               "field\\ one=1.5,field\\,two=2i,field\\=three=\"x y,z\" %d" % t)
    out.append("weird\\ meas\\,urement,tag\\ key=other,loc=c field\\ one=2.5 %d" % (t + 10))
    out.append("weird\\ meas\\,urement,tag\\ key=other,loc=c field\\ one=-0.25 %d" % (t + 20))
    out.append("m=eq,owner=o'neil v=1 %d" % t)
    out.append("m=eq,owner=smith v=2 %d" % (t + 1))
    out.append("m=eq,owner=o'neil v=3 %d" % (t + 2))
    out.append("temp\u00e9rature,ville=S\u00e9oul,\u00e9tage=3 valeur=18.5 %d" % t)
    out.append("temp\u00e9rature,ville=Montr\u00e9al,\u00e9tage=1 valeur=-4.25 %d" % (t + 60))
    out.append("quotes,q=\"dq\" s=\"a \\\"quoted\\\" \\\\ string\",n=1 %d" % t)
    out.append("quotes,q=back\\slash s=\"plain\",n=2 %d" % (t + 1))


def edge(rng, out):
    """Duplicates (fields merged, the newer wins), values at bucket edges, big and small floats."""
    out.append("# edge cases")
    out.append("# precision=s")
    t = DAY0 + 3 * 3600
    out.append("edge,k=dup v=1,w=10 %d" % t)
    out.append("edge,k=dup v=2 %d" % t)
    out.append("edge,k=dup x=5 %d" % t)
    out.append("edge,k=dup v=3 %d" % (t + 60))
    out.append("edge,k=bounds v=1 %d" % (t - 1))
    out.append("edge,k=bounds v=2 %d" % t)
    out.append("edge,k=bounds v=3 %d" % (t + 3599))
    out.append("edge,k=bounds v=4 %d" % (t + 3600))
    out.append("edge,k=float v=1e300 %d" % t)
    out.append("edge,k=float v=-1e-300 %d" % (t + 1))
    out.append("edge,k=float v=0.1 %d" % (t + 2))
    out.append("edge,k=float v=123456789.123456789 %d" % (t + 3))
    out.append("edge,k=float v=-0 %d" % (t + 4))
    out.append("edge,k=float v=1E3 %d" % (t + 5))
    out.append("edge,k=float v=4611686018427387904 %d" % (t + 6))
    out.append("edge,k=float v=12345678901234567890 %d" % (t + 7))
    out.append("edge,k=float v=1e-7 %d" % (t + 8))
    out.append("edge,k=pre1970 v=7 %d" % -86400)
    out.append("edge,k=pre1970 v=8 %d" % 0)


def main():
    rng = random.Random(20240501)
    out = ["# Written by make_data.py (deterministic); loaded by test_influx_oracle.py into",
           "# influxd 1.6.7 and Nimbus alike. 2024-05-01T00:00:00Z = 1714521600."]
    for part in (sensor_reading, device_status, vibration, cpu, counter, special, edge):
        part(rng, out)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
