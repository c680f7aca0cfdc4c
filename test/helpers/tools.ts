/** Two functions for tool-call tests, with parameter schemas small enough for the embedded model to fill. */
export const WEATHER = { type: 'object', additionalProperties: false, required: ['location', 'unit'], properties: { location: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } } };
export const TIME = { type: 'object', additionalProperties: false, required: ['zone'], properties: { zone: { enum: ['UTC', 'CET'] } } };
export const TOOLS = [
  { type: 'function' as const, function: { name: 'get_weather', description: 'The weather in a city', parameters: WEATHER } },
  { type: 'function' as const, function: { name: 'get_time', description: 'The time in a zone', parameters: TIME } },
];
