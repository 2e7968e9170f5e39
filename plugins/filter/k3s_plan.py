# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters: controller-side decisions from the host state that
pik3s.cluster.k3s_host_info read (rules in plugin_utils/k3s_plan.py; docs in
k3s_prepare_plan.yml, k3s_service_plan.yml, k3s_tool_links.yml,
k3s_selected_phases.yml, k3s_agent_batch.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_plan


def _call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except (k3s_plan.PlanError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"{func.__name__}: {exc}") from None


def k3s_prepare_plan(state, settings):
    return _call(k3s_plan.prepare_plan, state, settings)


def k3s_service_plan(unit, changed_paths=(), restart_paths=(), reload_paths=(), check_mode=False):
    return _call(k3s_plan.service_plan, unit, changed_paths, restart_paths, reload_paths, check_mode)


def k3s_tool_links(files, names, bin_dir, binary):
    return _call(k3s_plan.tool_links, files, names, bin_dir, binary)


def k3s_agent_batch(agent_count):
    return _call(k3s_plan.agent_batch, agent_count)


def k3s_selected_phases(phases, prefix, run_tags=("all",), skip_tags=()):
    return _call(k3s_plan.selected_phases, phases, prefix, run_tags, skip_tags)


class FilterModule:
    def filters(self):
        return {
            "k3s_prepare_plan": k3s_prepare_plan,
            "k3s_service_plan": k3s_service_plan,
            "k3s_tool_links": k3s_tool_links,
            "k3s_selected_phases": k3s_selected_phases,
            "k3s_agent_batch": k3s_agent_batch,
        }
