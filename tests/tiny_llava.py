"""Build a tiny random JoyCaption-shaped LLaVA (Llama-3 text model + SigLIP vision tower) offline, in well under 1 s.

The folder it writes loads through the same `AutoProcessor` / `LlavaForConditionalGeneration.from_pretrained` path as
`fancyfeast/llama-joycaption-beta-one-hf-llava`: Llama-3 special tokens, a JoyCaption-style chat template that
inserts the image token itself, left padding, a SigLIP image processor. Built at test time: no model files in git.
"""

from __future__ import annotations

import string
from pathlib import Path

BOS, EOS, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"
HEADER_START, HEADER_END, IMAGE = "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_70|>"
SPECIAL_TOKENS = [BOS, EOS, EOT, PAD, HEADER_START, HEADER_END, IMAGE]

# JoyCaption's template, cut down: Llama-3 headers, the image token at the start of the first user message.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(image_done=false) %}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'user' and not ns.image_done %}{{ '<|reserved_special_token_70|>' }}"
    "{% set ns.image_done = true %}{% endif %}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

CORPUS = [
    "You are a helpful image captioner.",
    "Write a detailed description for this image.",
    "Write a medium-length detailed description for this image in a casual tone.",
    "A photograph of a cat sitting on a red chair near a window with soft natural light.",
    "An astronaut in a white suit stands beside a flag on the grey surface of the moon.",
    "A horse runs across a green field; a motorcycle is parked on a wet road at night.",
    string.ascii_letters + string.digits + string.punctuation,
]


def build_tiny_joycaption(
    folder: Path, *, image_size: int = 32, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """Write a tiny random JoyCaption-shaped LLaVA (processor + weights) into `folder` and return it.

    `hidden` and `layers` size both towers (the benchmark builds a larger one with them)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    # Like Llama 3's tokenizer, add BOS on every encode: with the template's own BOS that makes the double-BOS trap.
    raw.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, raw.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": IMAGE},
    )
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    patch = 8
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
    )
    vocab = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)
    config = LlavaConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        text_config=LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.convert_tokens_to_ids(EOT),
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=image_token_id,
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(EOT)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
