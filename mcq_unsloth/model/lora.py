"""LoRA's settings, with PEFT's field names: what the model loader takes and a recipe's ``lora`` section holds."""

from __future__ import annotations

from dataclasses import dataclass, field

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraArgs:
    """LoRA adapter settings, with PEFT's field names."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    bias: str = field(default="none", metadata={"choices": ("none", "all", "lora_only")})
    use_rslora: bool = False

    def problems(self) -> list[str]:
        found = []
        if self.r < 1:
            found.append(f"lora.r: must be at least 1, got {self.r}")
        if self.lora_alpha <= 0:
            found.append(f"lora.lora_alpha: must be positive (LoRA scales its update by lora_alpha / r), got "
                         f"{self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            found.append(f"lora.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            found.append("lora.target_modules: name at least one module, e.g. q_proj")
        return found
