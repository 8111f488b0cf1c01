"""What a reader must know beside the figures: failures, where kernel figures ran, what a tick is, the run report."""

from __future__ import annotations

from datetime import datetime

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective, SphinxRole

from course.kernel import guest_kernels
from course.publish.sphinxext import depends
from course.publish.sphinxext.base import CourseMixin, Lookup, simple_table
from course.results.clock import utc_minute
from course.results.store import ResultSet


class CourseFailures(CourseMixin, SphinxDirective):
    """The failures of a lesson's last run on this machine, each with its log; nothing when it went well."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        found = self.current_lesson(self.arguments[0])
        if found is None:
            return []
        out: list[nodes.Node] = []
        for failure in found[1].get("failures", []):
            box = nodes.admonition(classes=["course-failure", "error"])
            box += nodes.title(text=f"Failed: {failure['step']} {failure['what']}")
            box += nodes.paragraph(
                text=f"{failure['message']} ({failure['at']}). "
                "Figures below from earlier runs are kept with their own dates."
            )
            if failure.get("log"):
                box += nodes.literal_block(failure["log"], failure["log"], language="text")
            out.append(box)
        return out


#: What a reader must know about kernel figures, by where they were measured, in one or two sentences: the
#: whole of it is said once, in the section of docs/measuring.md the box links to (KERNEL_RUN_EXPLAINED).
KERNEL_RUN_TEXT = {
    "tcg": (
        "{subject} come from software emulation (QEMU TCG), in emulated ticks: the host's time spent emulating, "
        "not work of the guest's processor. They have no nanoseconds and compare with no other clock."
    ),
    "tcg-icount": (
        "{subject} come from deterministic emulation (QEMU -icount shift=0), in icount ticks: one tick is one "
        "instruction of the guest, the same on every boot and every host. They measure path length, not time."
    ),
    "kvm": (
        "{subject} come from a virtual machine with hardware virtualisation (KVM), in the host processor's own "
        "ticks, as in user space."
    ),
    "host-kernel": (
        "{subject} come from the modules loaded into the running kernel of the measured machine, as the article did."
    ),
}

#: The label of the section that explains every kind of kernel run in full (docs/measuring.md).
KERNEL_RUN_EXPLAINED = "kernel-figures-under-emulation"


#: The box's title: the page's kernel figures come from this machine's last run and the matrix's guests.
KERNEL_RUN_TITLE = "Where the kernel figures on this page come from"

#: The box's opening beside a run that did not count instructions: the page's icount figures (its charts'
#: headline) come from other boots, the matrix's guests, named by kernel.
MATRIX_APART = (
    "Figures counted in icount ticks on this page come from other boots, under deterministic emulation "
    "(QEMU -icount shift=0): {boots}, each named in the charts and tables. An icount tick is one instruction of "
    "the guest: the same module gives the same count on every boot and every host."
)

#: Who the run's paragraph speaks of: "These kernel figures" alone, this machine's own beside other boots'.
RUN_SUBJECT_ALONE = "These kernel figures"
RUN_SUBJECT_BESIDE = "The kernel figures of this machine's own last run (shown under {label})"


def boots_in_words(boots: list[ResultSet]) -> str:
    """Other boots as a reader names them: "the kernel matrix's guests (6.1, 6.12 and 6.1-rt) and Other"."""
    kernels = [str(guest_kernels.matrix_guest(s)["name"]) for s in boots if guest_kernels.matrix_guest(s).get("name")]
    phrases = [f"the kernel matrix's guests ({and_list(kernels)})"] if kernels else []
    phrases += [s.label for s in boots if not guest_kernels.matrix_guest(s).get("name")]
    return and_list(phrases)


def and_list(words: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def why_in_words(run: dict) -> str:
    """Why the kernel figures were measured where they were, in one plain sentence.

    The runner records the probe's own words (the last line QEMU printed, an assertion in its
    source); that is for the machine's page. A reader of a lesson needs the reason, not the log.
    """
    acceleration, why = run.get("acceleration", ""), run.get("why", "")
    if not why:
        return ""
    if why == "asked for":
        if acceleration == "tcg-icount":
            return (
                "Deterministic emulation was asked for by name (--acceleration tcg-icount), "
                "to count instructions rather than time."
            )
        return f"This was asked for by name (--acceleration {acceleration})."
    if acceleration == "kvm":
        return "A test boot showed that hardware virtualisation (KVM) works on this machine."
    if acceleration == "tcg":
        if "/dev/kvm" in why:
            reason = "this machine offers no hardware virtualisation to the course (no usable /dev/kvm)"
        elif "hung" in why:
            reason = "a test boot with hardware virtualisation (KVM) did not finish on this machine"
        elif "failed" in why:
            reason = "a test boot with hardware virtualisation (KVM) failed here: QEMU stopped with an error"
        else:
            reason = "hardware virtualisation (KVM) could not be used on this machine"
        return f"Emulation was used because {reason}. Emulation is slower than KVM, but runs on any machine."
    return f"The course chose {acceleration or 'this runner'} on this machine."


class CourseKernelRun(CourseMixin, SphinxDirective):
    """Where a lesson's kernel figures were measured (VM and acceleration, or host), said plainly.

    The runner's own record of why (a probe's last console line) goes to the machine's page.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lesson = self.arguments[0]
        found = self.current_lesson(lesson)
        if found is None:
            return []
        result_set, data = found
        run = data.get("kernel_run")
        if not run:
            self.warn(f"no kernel run recorded for {lesson!r} in result set {result_set.id!r}", "missing")
            return []
        box = nodes.admonition(classes=["course-kernel-run", "note"])
        box += nodes.title(text=KERNEL_RUN_TITLE)
        acceleration = run.get("acceleration", "")
        # The matrix's boots sit on the same page, in a unit of their own, and are its charts' headline:
        # the box opens with them, then says where this machine's own run measured (or why it did not).
        guests = [] if acceleration == "tcg-icount" else self.icount_boots(lesson, result_set)
        if guests:
            box += nodes.paragraph(text=MATRIX_APART.format(boots=boots_in_words(guests)))
        if "unavailable" in run:
            box += nodes.paragraph(text=f"Not run on {result_set.label}: {run['unavailable']}")
            return [box]
        subject = RUN_SUBJECT_BESIDE.format(label=result_set.label) if guests else RUN_SUBJECT_ALONE
        known = KERNEL_RUN_TEXT.get(acceleration)  # a set's acceleration is its own words: never a template
        text = known.format(subject=subject) if known else f"{subject} were measured with {acceleration}."
        said = nodes.paragraph(text=text + " ")
        said += explained_link(self, "What each kind of run measures")
        said += nodes.Text(".")
        box += said
        why = why_in_words(run)
        if why:
            box += nodes.paragraph(text=why)
        # Which guest (a boot from memory or virtme-ng's) decides what a file is there (lessons 2, 4, 7).
        guest = f"; guest: {run['guest_system']}" if run.get("guest_system") else ""
        where = f"Runner: {run.get('runner')}; kernel: {run.get('guest_kernel')}; acceleration: {acceleration}"
        details = nodes.paragraph(text=f"{where}{guest}. ")
        details += machine_link(self, result_set.id, "The runner's full record is on the machine's page")
        details += nodes.Text(".")
        box += details
        return [box]

    def icount_boots(self, lesson: str, current: ResultSet) -> list[ResultSet]:
        """The page's other sets whose ``lesson`` counted instructions (the matrix's guests first, by kernel)."""
        found = []
        for other in self.data.lesson_sets():
            if other.id == current.id:
                continue
            file = other.lesson_file(lesson)
            self.use(Lookup(other, None, file if file.is_file() else None))
            if (other.lessons.get(lesson, {}).get("kernel_run") or {}).get("acceleration") == "tcg-icount":
                found.append(other)
        guests = guest_kernels.guest_sets(found)
        return guests + [s for s in found if s not in guests]


def explained_link(directive: SphinxDirective, text: str) -> addnodes.pending_xref:
    """A link to the section that says in full what each kind of kernel run measures."""
    return addnodes.pending_xref(
        "",
        nodes.inline(text=text),
        refdomain="std",
        reftype="ref",
        reftarget=KERNEL_RUN_EXPLAINED,
        refexplicit=True,
        refdoc=directive.env.docname,
    )


def machine_link(directive: SphinxDirective, set_id: str, text: str) -> addnodes.pending_xref:
    """A link to a result set's generated page."""
    return addnodes.pending_xref(
        "",
        nodes.inline(text=text),
        refdomain="std",
        reftype="doc",
        reftarget=f"/{directive.config.course_machines_page}/{set_id}",
        refexplicit=True,
        refdoc=directive.env.docname,
    )


def tick_context(machine: dict) -> list[str]:
    """What a tick means on ``machine``, in sentences a reader can check against /proc/cpuinfo."""
    flags = set(machine.get("tsc_flags", []))
    rate = machine.get("tsc_hz")
    rate_text = f"{rate / 1e9:.2f} GHz" if rate else "an unmeasured rate"
    out = []
    if {"constant_tsc", "nonstop_tsc"} <= flags:
        out.append(
            f"The time-stamp counter of {machine.get('cpu_model', 'this CPU')} is invariant (constant_tsc, "
            f"nonstop_tsc): it ticks at a fixed {rate_text} whatever the core's clock, so a tick is a slice of "
            "time, not a cycle. The article's 500 MHz Pentium-class CPU counted core cycles: "
            "compare nanoseconds, or ratios within one machine, rather than raw ticks."
        )
    else:
        out.append(
            f"The time-stamp counter here is not marked invariant: ticks may follow the core clock ({rate_text} "
            "measured), as the article's did, and change with frequency scaling."
        )
    if machine.get("hypervisor"):
        out.append(
            f"This machine is a virtual machine ({machine.get('virtualization', 'vm')}): the hypervisor may offset "
            "or scale the counter, and other guests share the CPU, which widens the distribution's tail."
        )
    else:
        out.append("This machine runs on bare hardware: no hypervisor stands between the program and the counter.")
    return out


#: What a page with ``course-context`` shows of ``set.json``: the sentences themselves.
TICK_VIEW = "tick-context"
depends.register(TICK_VIEW, lambda info: tick_context(info.get("machine") or {}))


def host_kind(result_set_id: str, machine: dict) -> str:
    """What the host under this machine's figures is, from its set's provenance: a VM or bare hardware."""
    if machine.get("hypervisor"):
        return f"{result_set_id}, itself a virtual machine: the real TSC, read under a hypervisor"
    return f"{result_set_id}, on bare hardware"


class HostRole(CourseMixin, SphinxRole):
    """``{host}`this machine's own kernel```: the words, then which set they mean and whether it is a VM.

    The fact comes from the set's ``set.json`` (its ``hypervisor`` flag), never from the lesson's text.
    """

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        result_set = self.data.current
        if result_set is None:
            self.warn("no result set of this machine for {host}; run invoke generate", "missing")
            return [nodes.Text(self.text)], []
        self.use(Lookup(result_set, None, None))  # the set's identity holds the hypervisor flag
        return [nodes.Text(f"{self.text} ({host_kind(result_set.id, result_set.machine)})")], []


class CourseContext(CourseMixin, SphinxDirective):
    """What a tick means on the machine of this page's figures (invariant TSC, hypervisor), said plainly."""

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            return []
        self.use_set_info(result_set, TICK_VIEW)  # the TSC rate as the sentences say it, not to the hertz
        box = nodes.admonition(classes=["course-context", "note"])
        box += nodes.title(text=f"What a tick is on {result_set.label}")
        for sentence in tick_context(result_set.machine):
            box += nodes.paragraph(text=sentence)
        return [box]


class CourseRunReport(CourseMixin, SphinxDirective):
    """The execution report: each lesson's last run (when, where, how long, cached steps, failures)."""

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            return [nodes.paragraph(text="No result set of this machine yet: run invoke generate.")]
        out: list[nodes.Node] = []
        rows = []
        for name, data in sorted(result_set.lessons.items()):
            if "steps" not in data:
                continue
            self.use(Lookup(result_set, None, result_set.lesson_file(name)))
            where = data.get("runner", "host")
            kernel = data.get("kernel_run") or {}
            if kernel.get("acceleration"):
                guest = f"guest {kernel.get('guest_kernel')} ({kernel['acceleration']})"
                where = f"host, and a {guest}" if where == "host" else guest  # programs on the host, modules in it
            elif kernel.get("unavailable"):
                where += f" (not run: {kernel['unavailable']})"
            seconds = sum(step["seconds"] for step in data["steps"])
            cached = sum(1 for step in data["steps"] if step.get("cached"))
            failures = data.get("failures", [])
            rows.append(
                [
                    name,
                    utc_minute(last_run(data)) + kept_since(data),
                    where,
                    f"{seconds:.2f} s",
                    f"{cached} of {len(data['steps'])}",
                    str(len(failures)) if failures else "none",
                ]
            )
        out.append(simple_table(["lesson", "last run", "where", "time in steps", "steps reused", "failures"], rows))
        return out


class CourseKept(CourseMixin, SphinxDirective):
    """After a student's rerun: which of a lesson's figures are its last run's and which were kept, and from when.

    Nothing when nothing was kept. The lesson file is a set's (untrusted): its names become text, never markup.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lesson = self.arguments[0]
        found = self.current_lesson(lesson)  # records the lesson file: a rerun that changes ``kept`` rebuilds the page
        if found is None:
            return []
        kept = found[1].get("kept") or {}
        if not isinstance(kept, dict) or not kept:
            return []
        by_date: dict[str, list[str]] = {}
        latest = last_run(found[1])
        for program, when in sorted(kept.items()):
            # As shown: one minute, once; and how much older than the rest, once that is a day or more.
            by_date.setdefault(utc_minute(str(when)) + days_before(str(when), latest), []).append(str(program))
        line = nodes.paragraph(classes=["course-kept"])
        line += nodes.Text(f"Last run {utc_minute(latest)}: every figure of this lesson but these; ")
        line += nodes.Text("; ".join(f"kept from {when}: {', '.join(names)}" for when, names in by_date.items()))
        line += nodes.Text(" (their sources unchanged; ")
        command = rerun_all_command(lesson)
        line += nodes.literal(text=command)
        line += nodes.Text(" reruns them).")
        return [line]


def rerun_all_command(lesson: str) -> str:
    """``invoke lesson 3 --all`` for ``03-timing``: the rerun that keeps nothing."""
    number = lesson.split("-", 1)[0]
    return f"invoke lesson {int(number) if number.isdigit() else lesson} --all"


def kept_since(data: dict) -> str:
    """The date of the figures a student's rerun kept, when it differs from the last run's (else ""), to the minute."""
    kept = data.get("kept") or {}
    if not isinstance(kept, dict) or not kept:
        return ""
    return f" (figures of {', '.join(sorted(kept))} kept from {utc_minute(str(min(kept.values())))})"


def days_before(stamp: str, later: str) -> str:
    """ " (35 days before the last run)" when ``stamp`` is a day or more older than ``later``, else ""."""
    try:
        days = (datetime.fromisoformat(later) - datetime.fromisoformat(stamp)).days
    except (TypeError, ValueError):
        return ""
    return f" ({days} day{'s' if days > 1 else ''} before the last run)" if days >= 1 else ""


def last_run(data: dict) -> str:
    """When a lesson's own run last measured something: its latest figure or capture, not the file's date.

    A run of several lessons writes every file at its end, so each file's date is that end; the figures
    and captures keep the moment each was taken. A derived figure is computed at the end too: left out.
    """
    stamps = [
        entry.get("measured_at", "")
        for kind in ("measurements", "captures")
        for entry in data.get(kind, {}).values()
        if isinstance(entry, dict) and not entry.get("derived")
    ]
    return max((stamp for stamp in stamps if stamp), default=data.get("measured_at", ""))
