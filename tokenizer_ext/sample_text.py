"""Ordinary English text (written for this package) on which `add-tokens` measures KL(old || new)."""

SAMPLE_TEXT = [
    ("The harbour was quiet in the early morning. A few fishing boats rocked against the pier, and the gulls "
    "walked along the wet stones looking for scraps that the night had left behind."),
    ("To make the bread, mix the flour with a little salt, add warm water slowly and knead the dough for ten "
    "minutes, until it is smooth and springs back when you press it with a finger."),
    ("The committee met on Tuesday to discuss the budget for the coming year. Most members agreed that the "
    "library needed new shelves, but there was a long argument about the cost of repairing the roof."),
    ("She opened the letter carefully, as if the paper might break, and read it twice before she sat down. "
    "Her brother was coming home in the spring, and he was bringing his children with him."),
    ("Rivers carry sand and small stones from the mountains to the sea. Over thousands of years this material "
    "builds wide plains, and the soil there is often rich enough for farming."),
    ("In the second half the visiting team scored twice, and the crowd fell silent. The home side pressed "
    "forward until the final whistle, but the goalkeeper stopped every shot."),
    ("When the train finally arrived, it was forty minutes late and so crowded that many passengers had to "
    "stand in the corridor all the way to the city."),
    ("The old clock in the hall had not worked for years. Every visitor asked about it, and every time my "
    "grandfather told a different story about where it had come from."),
]
