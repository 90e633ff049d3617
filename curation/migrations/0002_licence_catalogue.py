"""The licence catalogue: Creative Commons 3.0 and 4.0, KOGL types 1-4, MIT and
Apache-2.0, works not protected by copyright, contract, unknown."""
from django.db import migrations

# code, name, family, version, url, commercial, derivatives, share-alike, attribution, description
CC = [
    ("by", "Attribution", True, True, False),
    ("by-sa", "Attribution-ShareAlike", True, True, True),
    ("by-nd", "Attribution-NoDerivatives", True, False, False),
    ("by-nc", "Attribution-NonCommercial", False, True, False),
    ("by-nc-sa", "Attribution-NonCommercial-ShareAlike", False, True, True),
    ("by-nc-nd", "Attribution-NonCommercial-NoDerivatives", False, False, False),
]


def catalogue():
    rows = [("cc0-1.0", "CC0 1.0 Universal (public domain dedication)", "cc", "1.0",
             "https://creativecommons.org/publicdomain/zero/1.0/", True, True, False, False,
             "No rights reserved.")]
    for version in ("3.0", "4.0"):
        for code, label, commercial, derivatives, sa in CC:
            rows.append((f"cc-{code}-{version}", f"CC {code.upper()} {version} ({label})", "cc", version,
                         f"https://creativecommons.org/licenses/{code}/{version}/", commercial, derivatives, sa,
                         True, ""))
    kogl = [
        (1, "Source indication", True, True),
        (2, "Source indication + no commercial use", False, True),
        (3, "Source indication + no derivatives", True, False),
        (4, "Source indication + no commercial use + no derivatives", False, False),
    ]
    for n, label, commercial, derivatives in kogl:
        rows.append((f"kogl-{n}", f"KOGL Type {n} ({label})", "kogl", "", "https://www.kogl.or.kr/info/license.do",
                     commercial, derivatives, False, True, "Korea Open Government Licence (공공누리)."))
    rows += [
        ("mit", "MIT License", "oss", "", "https://opensource.org/license/mit", True, True, False, True,
         "Keep the copyright notice and licence text."),
        ("apache-2.0", "Apache License 2.0", "oss", "2.0", "https://www.apache.org/licenses/LICENSE-2.0",
         True, True, False, True, "Keep the notice; state changes."),
        ("public-law", "Not protected: statutes, court rulings, government notices", "public", "", "", True, True,
         False, False, "Official works excluded from copyright protection (e.g. Korean Copyright Act art. 7)."),
        ("public-domain", "Public domain (copyright expired)", "public", "", "", True, True, False, False, ""),
        ("contract", "Proprietary contract", "contract", "", "", True, True, False, False,
         "Rights as granted by the contract named on the source."),
        ("contract-research", "Proprietary contract, research use only", "contract", "", "", False, True, False,
         False, "The contract forbids commercial use."),
        ("unknown", "Unknown licence", "unknown", "", "", False, False, False, True,
         "Rights unclear: treated as the most restrictive case."),
    ]
    return rows


def load(apps, schema_editor):
    Licence = apps.get_model("curation", "Licence")
    for code, name, family, version, url, com, der, sa, att, desc in catalogue():
        Licence.objects.update_or_create(code=code, defaults=dict(
            name=name, family=family, version=version, url=url, allows_commercial=com, allows_derivatives=der,
            share_alike=sa, requires_attribution=att, description=desc))


def unload(apps, schema_editor):
    apps.get_model("curation", "Licence").objects.filter(code__in=[r[0] for r in catalogue()]).delete()


class Migration(migrations.Migration):
    dependencies = [("curation", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
