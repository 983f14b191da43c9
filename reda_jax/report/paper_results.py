"""The ReDA paper's result tables as data (Tables 1-5), and its row names for our task sets.

Transcribed from the paper text (shared/paper/reda-paper.txt) as printed: the text blocks
below are copied verbatim and parsed at import. Cells are `PaperCell(mean, std)`; std is None
where the paper prints only a mean (the ablation variants of Tables 3-4, all of Table 5).

* Table 1: on-policy protocol, methods OM-BC, OM-SAC, CORRO, FOCAL, PromptDT, ReDA; 21 rows
  (7 task sets x 1/3/5 checkpoints) and an Average row (the plain mean of the 21 row means).
* Table 2: the same under the off-policy protocol.
* Table 3: w/o model, w/o adv., ReDA on the Walker2d task sets. Off-policy numbers: its ReDA
  means equal Table 2's. (Its Walker2d Gravity-1 ReDA std, 321.3, is Table 1's on-policy std;
  Table 2 prints 374.2. Kept as printed.) No Average row in the paper.
* Table 4: w/o UP, w/o TC, ReDA, same rows and protocol as Table 3.
* Table 5 (Appendix B.9): 1 / 3 / 5 dynamics models on Walker2d Gravity-1, both protocols
  (its 3-model column equals ReDA in Tables 1 and 2).

Public API::

    PAPER_TASK_SETS: our task-set names in the paper's row order
    METHOD_LABELS: our method name -> the paper's column label
    row_name(task_set, num_checkpoints) -> "Walker2d Dof-Damping-1";  parse_row_name(name)
    TABLES: {"table1": PaperTable, ...}
    lookup(table, row, column, protocol=None) -> PaperCell | None
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping

PAPER_TASK_SETS = ("walker2d-gravity", "walker2d-damping", "ant-gravity", "ant-damping",
                   "hopper-gravity", "hopper-damping", "halfcheetah-gravity")
"""The seven task sets of Tables 1-2, in the paper's row order."""

CHECKPOINTS = (1, 3, 5)

ENV_LABELS = {"walker2d": "Walker2d", "ant": "Ant", "hopper": "Hopper",
              "halfcheetah": "HalfCheetah", "inverted-pendulum": "InvertedPendulum"}
PARAMETER_LABELS = {"gravity": "Gravity", "damping": "Dof-Damping"}

MAIN_METHODS = ("om_bc", "om_sac", "corro", "focal", "prompt_dt", "reda")
"""Tables 1-2 columns, in the paper's order."""

METHOD_LABELS = {
    "om_bc": "OM-BC", "om_sac": "OM-SAC", "corro": "CORRO", "focal": "FOCAL",
    "prompt_dt": "PromptDT", "reda": "ReDA",
    "reda_wo_model": "w/o model", "reda_wo_adv": "w/o adv.", "reda_wo_up": "w/o UP",
    "reda_wo_tc": "w/o TC",
    "bc": "BC", "oracle": "Oracle",
}

SANITY_METHODS = ("bc", "oracle")
"""Our sanity floor (BC without context) and ceiling (the true task instead of z), shown
beside the paper's methods in every table (the paper has no such columns)."""

PROTOCOL_LABELS = {"on_policy": "on-policy", "off_policy": "off-policy"}


def row_name(task_set: str, num_checkpoints: int) -> str:
    """Our task set + checkpoint count -> the paper's row name, e.g.
    ("walker2d-damping", 1) -> "Walker2d Dof-Damping-1"."""
    env, _, parameter = task_set.rpartition("-")
    if env not in ENV_LABELS or parameter not in PARAMETER_LABELS:
        raise ValueError(f"no paper row name for task set {task_set!r}")
    return f"{ENV_LABELS[env]} {PARAMETER_LABELS[parameter]}-{int(num_checkpoints)}"


def parse_row_name(name: str) -> tuple[str, int]:
    """The inverse of row_name; also reads the paper's abbreviation "DofDamp"."""
    m = re.fullmatch(r"(\S+) (Gravity|Dof-Damping|DofDamp)-(\d+)", name.strip())
    if not m:
        raise ValueError(f"not a paper row name: {name!r}")
    envs = {v: k for k, v in ENV_LABELS.items()}
    if m.group(1) not in envs:
        raise ValueError(f"unknown environment in row name {name!r}")
    parameter = "gravity" if m.group(2) == "Gravity" else "damping"
    return f"{envs[m.group(1)]}-{parameter}", int(m.group(3))


@dataclasses.dataclass(frozen=True)
class PaperCell:
    mean: float
    std: float | None = None

    def format(self, precision: int = 1) -> str:
        if self.std is None:
            return f"{self.mean:.{precision}f}"
        return f"{self.mean:.{precision}f} ± {self.std:.{precision}f}"


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """One table. `cells[(row, protocol)][column]`; `columns` are method names (Tables 1-4)
    or numbers of dynamics models as strings (Table 5). `protocol` is the table's protocol,
    None when its rows carry both (Table 5). `average` is the paper's printed Average row
    (None where the paper prints none)."""

    number: int
    caption: str
    protocol: str | None
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], Mapping[str, PaperCell]]
    average: Mapping[str, float] | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        out: list[str] = []
        for row, _ in self.cells:
            if row not in out:
                out.append(row)
        return tuple(out)

    @property
    def protocols(self) -> tuple[str, ...]:
        out: list[str] = []
        for _, p in self.cells:
            if p not in out:
                out.append(p)
        return tuple(out)


_NUMBER = r"(\d+(?:\.\d+)?)"
_CELL = re.compile(_NUMBER + r"(?:\s*±\s*" + _NUMBER + r")?")


def _parse(block: str, columns: tuple[str, ...], protocol: str | None = None):
    """Rows "Walker2d Gravity-1 835.7 ± 158.9 1227.4 ..." (an optional "(on-policy
    protocol)" after the row name sets the protocol) and an optional "Average ..." row."""
    cells: dict[tuple[str, str], dict[str, PaperCell]] = {}
    average = None
    for line in block.strip().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("Average"):
            values = [float(v) for v in line.split()[1:]]
            if len(values) != len(columns):
                raise ValueError(f"bad Average row: {line!r}")
            average = dict(zip(columns, values))
            continue
        m = re.match(r"(\S+ \S+-\d+)(?: \((on|off)-policy protocol\))? (.*)", line)
        if not m:
            raise ValueError(f"cannot parse paper row {line!r}")
        row = row_name(*parse_row_name(m.group(1)))
        p = f"{m.group(2)}_policy" if m.group(2) else protocol
        found = [PaperCell(float(a), float(b) if b else None)
                 for a, b in _CELL.findall(m.group(3))]
        if len(found) != len(columns):
            raise ValueError(f"expected {len(columns)} cells in {line!r}, got {len(found)}")
        cells[(row, p)] = dict(zip(columns, found))
    return cells, average


# Table 1 (verbatim): "Average scores of the meta-policy under the on-policy protocol. The
# performance is averaged over 5 random seeds."
_TABLE1 = """
Walker2d Gravity-1 835.7 ± 158.9 1227.4 ± 176.8 965.7 ± 283.5 1260.2 ± 292.1 1019.7 ± 216.4 1720.8 ± 321.3
Walker2d Gravity-3 1110.4 ± 170.6 1180.1 ± 175.7 1269.8 ± 309.9 1584.6 ± 361.4 1125.0 ± 226.0 1611.6 ± 288.0
Walker2d Gravity-5 657.4 ± 265.8 1216.5 ± 388.4 1412.5 ± 387.7 2181.7 ± 355.7 1082.8 ± 277.7 2560.7 ± 362.1
Walker2d Dof-Damping-1 2692.3 ± 488.5 2995.4 ± 287.9 2756.5 ± 379.5 3409.2 ± 343.9 2635.0 ± 298.6 3769.2 ± 364.2
Walker2d Dof-Damping-3 1734.5 ± 309.0 1941.4 ± 342.5 2232.0 ± 332.4 1940.7 ± 321.9 1935.1 ± 342.3 3536.7 ± 258.7
Walker2d Dof-Damping-5 998.8 ± 231.3 1478.9 ± 267.6 1647.5 ± 423.3 2222.0 ± 311.0 1136.0 ± 281.2 2497.6 ± 339.4
Ant Gravity-1 3155.4 ± 347.4 2943.5 ± 533.6 3154.4 ± 698.3 3420.9 ± 536.6 3137.1 ± 437.9 3536.8 ± 479.8
Ant Gravity-3 3673.5 ± 471.3 3623.4 ± 495.4 3845.0 ± 502.3 3763.1 ± 452.9 3665.7 ± 437.9 4403.4 ± 464.8
Ant Gravity-5 3273.5 ± 417.4 3543.7 ± 576.0 3451.1 ± 549.6 3681.3 ± 567.2 3114.1 ± 476.4 3735.2 ± 498.3
Ant Dof-Damping-1 1849.5 ± 378.3 3243.6 ± 395.4 3107.5 ± 299.0 2387.7 ± 380.5 2764.7 ± 374.1 3409.2 ± 332.1
Ant Dof-Damping-3 3119.1 ± 382.9 3385.6 ± 395.3 3289.4 ± 375.4 3160.2 ± 361.2 3378.4 ± 358.5 3804.2 ± 412.3
Ant Dof-Damping-5 2391.9 ± 312.3 2422.7 ± 379.4 2243.7 ± 432.3 2461.6 ± 356.9 2145.9 ± 309.2 2547.7 ± 366.7
Hopper Gravity-1 1002.0 ± 266.6 1453.6 ± 564.4 903.4 ± 134.4 1148.6 ± 344.4 1123.9 ± 333.0 2069.6 ± 436.5
Hopper Gravity-3 1403.0 ± 405.5 1534.7 ± 398.6 700.5 ± 121.9 1562.5 ± 348.3 1264.2 ± 355.2 1784.0 ± 415.8
Hopper Gravity-5 1086.7 ± 184.8 1495.5 ± 317.9 622.7 ± 200.8 594.3 ± 443.6 1001.6 ± 232.7 1539.1 ± 493.1
Hopper Dof-Damping-1 1228.3 ± 233.3 1104.6 ± 258.3 787.3 ± 132.5 835.0 ± 309.5 971.9 ± 265.5 1419.6 ± 296.7
Hopper Dof-Damping-3 1463.4 ± 390.8 1455.6 ± 388.1 768.2 ± 191.1 1445.6 ± 356.3 1223.7 ± 377.4 1573.0 ± 400.5
Hopper Dof-Damping-5 1047.3 ± 291.4 1461.7 ± 371.7 892.8 ± 164.3 1356.0 ± 239.2 1133.9 ± 186.5 1552.3 ± 326.5
HalfCheetah Gravity-1 4204.0 ± 840.3 4641.7 ± 745.6 5353.7 ± 869.6 3651.9 ± 505.9 5034.1 ± 644.3 6772.0 ± 649.5
HalfCheetah Gravity-3 3719.9 ± 614.6 5419.6 ± 682.0 5054.6 ± 754.7 2950.0 ± 391.7 3900.9 ± 944.0 6130.8 ± 856.4
HalfCheetah Gravity-5 2684.8 ± 584.5 4398.2 ± 778.3 4165.7 ± 654.7 1863.9 ± 633.4 3494.8 ± 711.6 4549.0 ± 753.9
Average 2063.4 2484.2 2315.4 2232.4 2204.3 3072.5
"""

# Table 2 (verbatim): "Average scores of the meta-policy under the off-policy protocol. The
# performance is averaged over 5 random seeds."
_TABLE2 = """
Walker2d Gravity-1 102.9 ± 16.5 773.9 ± 115.4 354.9 ± 113.3 972.4 ± 314.9 516.5 ± 165.3 1349.8 ± 374.2
Walker2d Gravity-3 887.5 ± 197.7 1096.0 ± 182.6 755.7 ± 387.5 1331.1 ± 384.5 996.6 ± 204.1 1336.3 ± 363.3
Walker2d Gravity-5 655.4 ± 253.2 983.0 ± 394.0 899.1 ± 298.5 2318.6 ± 312.3 1254.8 ± 255.0 2421.0 ± 398.7
Walker2d Dof-Damping-1 2566.4 ± 358.6 2567.3 ± 381.1 2138.2 ± 432.6 2141.7 ± 299.3 2594.3 ± 315.6 3274.5 ± 429.5
Walker2d Dof-Damping-3 1599.2 ± 340.2 1611.1 ± 415.6 1765.8 ± 498.6 1619.0 ± 362.0 1883.9 ± 331.2 3236.0 ± 322.7
Walker2d Dof-Damping-5 823.6 ± 340.1 1798.6 ± 345.6 1667.2 ± 438.8 1943.4 ± 353.4 1446.5 ± 326.5 2243.7 ± 352.2
Ant Gravity-1 2512.5 ± 295.1 2673.2 ± 464.3 1876.9 ± 527.6 3240.3 ± 346.8 2895.3 ± 349.5 3392.5 ± 343.9
Ant Gravity-3 2910.7 ± 283.4 2982.0 ± 422.7 1575.8 ± 675.5 3442.5 ± 337.2 3243.7 ± 322.4 4128.6 ± 348.3
Ant Gravity-5 3064.7 ± 385.9 2764.7 ± 445.5 1647.8 ± 624.2 3437.4 ± 357.1 3049.1 ± 364.1 3529.1 ± 337.4
Ant Dof-Damping-1 2319.5 ± 373.3 3125.4 ± 362.8 2469.4 ± 446.6 2171.1 ± 363.3 2638.5 ± 332.6 3367.4 ± 302.7
Ant Dof-Damping-3 2580.4 ± 291.1 2848.9 ± 399.0 2507.5 ± 355.7 3022.2 ± 318.5 2723.8 ± 317.7 3727.2 ± 356.4
Ant Dof-Damping-5 2380.7 ± 228.1 2218.4 ± 360.1 2174.6 ± 289.0 2591.0 ± 338.7 2441.0 ± 206.5 2611.3 ± 382.5
Hopper Gravity-1 1394.2 ± 330.2 1322.9 ± 455.2 925.6 ± 107.1 1328.8 ± 306.7 1305.5 ± 346.4 1674.5 ± 512.6
Hopper Gravity-3 1497.8 ± 406.2 1429.3 ± 348.3 671.3 ± 223.9 1844.8 ± 741.2 1574.3 ± 366.7 1521.2 ± 376.0
Hopper Gravity-5 1262.6 ± 412.6 1318.6 ± 331.5 754.8 ± 208.7 750.1 ± 299.9 1396.6 ± 276.3 1489.6 ± 319.9
Hopper Dof-Damping-1 1241.7 ± 144.3 991.5 ± 189.2 804.3 ± 122.8 905.2 ± 345.9 1112.9 ± 164.6 1255.7 ± 306.4
Hopper Dof-Damping-3 1161.4 ± 279.9 1136.9 ± 372.9 863.4 ± 212.7 672.8 ± 301.7 1284.7 ± 244.3 1440.0 ± 369.6
Hopper Dof-Damping-5 715.8 ± 220.2 1387.3 ± 416.6 637.6 ± 275.7 722.9 ± 295.3 910.4 ± 264.2 1492.2 ± 334.3
HalfCheetah Gravity-1 6024.0 ± 768.2 3985.1 ± 676.9 5244.7 ± 766.6 3960.4 ± 517.0 5755.3 ± 582.9 6243.8 ± 604.4
HalfCheetah Gravity-3 2112.9 ± 601.1 4792.5 ± 596.7 4865.2 ± 710.8 2293.1 ± 532.1 3211.5 ± 660.6 5749.2 ± 599.0
HalfCheetah Gravity-5 3006.2 ± 684.3 4164.7 ± 602.3 3654.6 ± 677.0 2181.2 ± 414.6 3243.8 ± 601.1 4268.1 ± 562.2
Average 1943.8 2189.1 1821.6 2042.4 2165.7 2845.3
"""

# Table 3 (verbatim): "Ablations on different variants of ReDA. The variant w/o model has no
# data augmentation and the variant w/o adv. augments data with rollouts from random policies."
_TABLE3 = """
Walker2d Gravity-1 834.0 1197.5 1349.8 ± 321.3
Walker2d Gravity-3 1135.5 1268.9 1336.3 ± 363.3
Walker2d Gravity-5 1348.6 1220.2 2421.0 ± 398.7
Walker2d DofDamp-1 2606.5 3186.2 3274.5 ± 429.5
Walker2d DofDamp-3 1773.3 2845.8 3236.0 ± 322.7
Walker2d DofDamp-5 1641.7 1566.0 2243.7 ± 352.2
"""

# Table 4 (verbatim): "Ablations on adversarial policy learning with different reward terms.
# The variant w/o UP learns the policy is ReDA with lambda1 = 0. The variant w/o TC is ReDA
# with lambda2 = 0."
_TABLE4 = """
Walker2d Gravity-1 1185.4 1281.3 1349.8 ± 321.3
Walker2d Gravity-3 1249.0 1292.3 1336.3 ± 363.3
Walker2d Gravity-5 1572.1 2212.5 2421.0 ± 398.7
Walker2d DofDamp-1 2893.2 3002.4 3274.5 ± 429.5
Walker2d DofDamp-3 2985.2 3145.8 3236.0 ± 322.7
Walker2d DofDamp-5 1787.8 2209.2 2243.7 ± 352.2
"""

# Table 5 (verbatim, Appendix B.9): "Ablations on different numbers of dynamics models. All
# results are averaged over 5 seeds."
_TABLE5 = """
Walker2d Gravity-1 (on-policy protocol) 1466.8 1720.8 1743.1
Walker2d Gravity-1 (off-policy protocol) 1254.5 1349.8 1376.5
"""


def _table(number, caption, protocol, columns, block) -> PaperTable:
    cells, average = _parse(block, columns, protocol)
    return PaperTable(number, caption, protocol, columns, cells, average)


TABLES: dict[str, PaperTable] = {
    "table1": _table(1, "Average scores of the meta-policy under the on-policy protocol",
                     "on_policy", MAIN_METHODS, _TABLE1),
    "table2": _table(2, "Average scores of the meta-policy under the off-policy protocol",
                     "off_policy", MAIN_METHODS, _TABLE2),
    "table3": _table(3, "Ablations on different variants of ReDA (w/o model: no data "
                     "augmentation; w/o adv.: rollouts of a uniform random policy)",
                     "off_policy", ("reda_wo_model", "reda_wo_adv", "reda"), _TABLE3),
    "table4": _table(4, "Ablations on the adversarial policy's reward terms (w/o UP: "
                     "lambda1 = 0; w/o TC: lambda2 = 0)",
                     "off_policy", ("reda_wo_up", "reda_wo_tc", "reda"), _TABLE4),
    "table5": _table(5, "Ablations on different numbers of dynamics models", None,
                     ("1", "3", "5"), _TABLE5),
}


def lookup(table: str, row: str, column: str | int,
           protocol: str | None = None) -> PaperCell | None:
    """The paper's cell, or None where the paper has none. `protocol` defaults to the
    table's own (required for Table 5)."""
    t = TABLES[table]
    p = protocol or t.protocol
    if p is None:
        raise ValueError(f"{table} has rows of both protocols: pass protocol=")
    return t.cells.get((row, p), {}).get(str(column))
