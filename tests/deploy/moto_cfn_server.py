"""moto_server whose CloudFormation change sets behave as CloudFormation's do in two respects.

moto 5.2.5 evaluates `Condition` when it creates a stack directly, but executing a change set
creates every resource of the template, conditional or not (ResourceMap.update). ecs/cfn/infra.yaml
creates an ALB or a rule on an existing listener depending on a condition, so without this the
emulator would try to add a rule to a listener that does not exist. This wrapper evaluates the
template's conditions with the change set's parameters first and hands moto only the resources
CloudFormation would create. And a stack made or changed by a change set has no Outputs in moto
(its output map is built once, before any resource exists): this rebuilds it after the change
set is applied, as UpdateStack already does. Everything else is moto as shipped (docs/deploy.md
lists what moto does not model).

Usage: moto_cfn_server.py [moto_server arguments]
"""

import sys

from moto import server
from moto.cloudformation.models import ChangeSet
from moto.cloudformation.parsing import ResourceMap

_update = ResourceMap.update


def _update_with_conditions(self, template, parameters=None):
    probe = ResourceMap(
        stack_id=self.stack_id,
        stack_name=self.stack_name if hasattr(self, "stack_name") else "probe",
        parameters=parameters if parameters is not None else self.input_parameters,
        tags=self.tags,
        region_name=self._region_name,
        account_id=self._account_id,
        template=template,
        cross_stack_resources=self.cross_stack_resources,
    )
    probe.load_mapping()
    probe.load_parameters()
    probe.load_conditions()
    kept = {
        name: resource
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or probe.lazy_condition_map[resource["Condition"]]
    }
    return _update(self, dict(template, Resources=kept), parameters)


def _apply_with_outputs(self):
    _apply(self)
    stack = self.stack
    stack.template = self.template
    stack._parse_template()
    stack.parameters = self.parameters
    stack.output_map = stack._create_output_map()


_apply = ChangeSet.apply
ResourceMap.update = _update_with_conditions
ChangeSet.apply = _apply_with_outputs

if __name__ == "__main__":
    server.main(sys.argv[1:])
