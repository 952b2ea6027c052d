"""The one table printer of the bench scripts: plain columns, or Markdown (for the docs)."""


def print_table(head: list[str], rows: list[list], markdown: bool = False) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(str(x) for x in r) + " |")
        return
    print("  ".join(head))
    for r in rows:
        print("  ".join(str(x) for x in r))
